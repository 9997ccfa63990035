"""The registration holds: the frozen spec files match the sha256 docs/registration.md lists, and no seed they use
was used by a lever screen or another spec."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
REGISTRATION = ROOT / "docs" / "registration.md"


def registered() -> dict[str, str]:
    return dict(re.findall(r"\| `(specs/[a-z_]+\.yaml)` \| \d+ \| `([0-9a-f]{64})` \|", REGISTRATION.read_text()))


def seeds(node) -> set[int]:
    """Every integer under a key ending in 'seed' or 'seeds', at any depth."""
    out: set[int] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if str(key).endswith(("seed", "seeds")):
                out |= {v for v in (value if isinstance(value, list) else [value]) if isinstance(v, int)}
            out |= seeds(value)
    elif isinstance(node, list):
        for value in node:
            out |= seeds(value)
    return out


def test_frozen_specs_match_their_registered_sha256():
    files = registered()
    assert set(files) == {"specs/cpu_study.yaml", "specs/cpu_pretraining.yaml"}
    for path, digest in files.items():
        assert hashlib.sha256((ROOT / path).read_bytes()).hexdigest() == digest, f"{path} changed after registration"


def test_registered_seeds_were_never_used_before():
    frozen = {ROOT / p for p in registered()}
    others = [p for p in [*ROOT.glob("specs/*.yaml"), *ROOT.glob("docs/levers/*.yaml")] if p not in frozen]
    used = set().union(*(seeds(yaml.safe_load(p.read_text())) for p in others))
    assert used  # what the lever screens and the other specs drew with (0 and 1 at registration)
    for path in frozen:
        spec = yaml.safe_load(path.read_text())
        mine = seeds(spec)
        assert not mine & used, f"{path.name} reuses seeds {sorted(mine & used)}"
        assert len(spec["replicate_seeds"]) == spec["replicates"]
