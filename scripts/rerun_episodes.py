#!/usr/bin/env python3
"""Re-run one policy's episodes of a finished evaluation (same positions, seeds, step limit) with a
decode-time head change or an executor change, and compare outcomes pair by pair with the original.
This measures decode/executor levers on the same trained weights (never on test positions: use it on
in-distribution controls).

    python scripts/rerun_episodes.py RUN POLICY EVALUATION TAG [head.FIELD=JSON ...] [task.FIELD=JSON ...]
    python scripts/rerun_episodes.py runs/e1 para in_distribution subcell head.subcell=true
    python scripts/rerun_episodes.py runs/e1 para in_distribution replan2 task.replan_every=2
"""
import collections
import json
import shutil
import sys
from pathlib import Path

import yaml


def main() -> None:
    from pxp.core.spec import validate_spec
    from pxp.experiment import evaluation
    from pxp.experiment.stats import mcnemar_exact

    run, policy, ev, tag = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    sets = dict(kv.split("=", 1) for kv in sys.argv[5:])
    ckpt = run / "checkpoints" / f"{policy}-{tag}"
    shutil.rmtree(ckpt, ignore_errors=True)
    shutil.copytree(run / "checkpoints" / policy, ckpt)
    marker = json.loads((ckpt / "checkpoint.json").read_text())
    for key, value in sets.items():
        if key.startswith("head."):
            marker["policy"]["head"][key[5:]] = json.loads(value)
    (ckpt / "checkpoint.json").write_text(json.dumps(marker))
    task_fields = {k[5:]: json.loads(v) for k, v in sets.items() if k.startswith("task.")}
    spec = validate_spec(yaml.safe_load((run / "spec.resolved.yaml").read_text()))
    eps = [json.loads(line) for line in open(run / "evals" / ev / "episodes.jsonl")]
    orig = [e for e in eps if e["policy"] == policy and not e.get("error")]
    tasks = [evaluation.EpisodeTask(evaluation=f"{ev}-{tag}", evaluator="rerun", policy=policy, checkpoint=str(ckpt),
                                    scene=spec.scene, offset=tuple(e["offset"]), view=e.get("view"), seed=e["seed"],
                                    cell=e["cell"] if not isinstance(e["cell"], list) else tuple(e["cell"]),
                                    max_steps=spec.evaluations[ev].max_steps,
                                    trained_stride=(marker.get("train") or {}).get("target_stride"), **task_fields)
             for e in orig]
    new = evaluation.run_episodes(tasks, workers=2, timeout=600)
    place = [(a["outcome"] == "PLACE", b["outcome"] == "PLACE") for a, b in zip(orig, new)]
    lost, gained = sum(a and not b for a, b in place), sum(b and not a for a, b in place)
    print(f"{policy} {ev} ({len(orig)} episodes): original PLACE {sum(a for a, _ in place)}, {tag} PLACE "
          f"{sum(b for _, b in place)}; {gained} gained, {lost} lost, exact McNemar p = {mcnemar_exact(gained, lost):.3f}")
    print("outcomes:", dict(collections.Counter(e["outcome"] for e in new)))
    print("first failures:", dict(collections.Counter((e.get("diagnostics") or {}).get("first_failure") for e in new)))


if __name__ == "__main__":
    main()
