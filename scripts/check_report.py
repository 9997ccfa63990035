#!/usr/bin/env python3
"""Check a run's report.html: every image and video it references exists, and it renders in headless Chromium.

    python scripts/check_report.py runs/quickstart [--screenshot report.png]

Exit code 1 lists the missing files. With Chromium installed (Debian: apt-get install chromium) it also loads
the page headless, waits for every <img> and <video> to load, and writes a full-page screenshot.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const vids = [...document.querySelectorAll('video')];
  const wait = vids.map(v => new Promise(r => { if (v.readyState >= 1) r(); else { v.onloadedmetadata = r; v.onerror = r; } }));
  Promise.all(wait).then(() => {
    const bad = imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src'))
      .concat(vids.filter(v => v.readyState < 1 || v.videoWidth === 0).map(v => v.getAttribute('src')));
    document.title = 'PXP-CHECK ' + JSON.stringify({images: imgs.length, videos: vids.length, broken: bad});
  });
});
</script>"""


def referenced(html: str) -> list[str]:
    return [s for s in re.findall(r'(?:src|href)="([^"]+)"', html) if not re.match(r"^[a-z]+:|#", s)]


def chromium() -> str | None:
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


def browser_check(report: Path, screenshot: Path | None) -> dict:
    exe = chromium()
    if exe is None:
        return {"skipped": "no chromium on PATH"}
    probe = report.with_name(".report_probe.html")
    probe.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
             "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required",
             "--virtual-time-budget=15000", f"--user-data-dir={tempfile.mkdtemp()}"]
    try:
        dom = subprocess.run([exe, *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120).stdout
        if screenshot:
            subprocess.run([exe, *flags, f"--screenshot={screenshot.resolve()}", "--window-size=1200,4000",
                            report.resolve().as_uri()], capture_output=True, timeout=120)
    finally:
        probe.unlink(missing_ok=True)
    m = re.search(r"<title>PXP-CHECK (.*?)</title>", dom)
    return json.loads(m.group(1).replace("&quot;", '"')) if m else {"broken": ["page did not finish loading"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--screenshot", type=Path)
    args = ap.parse_args()
    args.run_dir = args.run_dir.resolve()  # file:// URIs need absolute paths (README: runs/quickstart)
    report = args.run_dir / "report.html"
    if not report.is_file():
        print(f"no report at {report}")
        return 1
    missing = [s for s in referenced(report.read_text()) if not (args.run_dir / s).is_file()]
    result = browser_check(report, args.screenshot)
    print(json.dumps({"report": str(report), "missing_files": missing, "browser": result}, indent=2))
    return 1 if missing or result.get("broken") else 0


if __name__ == "__main__":
    sys.exit(main())
