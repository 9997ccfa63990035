#!/usr/bin/env python3
"""Open-loop error of a trained policy on its own training frames, by time since the episode start:
the median / 90th percentile distance (cm) between the last predicted target and the demo's.
Shows whether a policy has learned the approach from home (t = 0), where rollouts start.

    python scripts/target_error_by_time.py RUN POLICY DATASET [FILTER_KEY]
    python scripts/target_error_by_time.py runs/e1 act left_half
    python scripts/target_error_by_time.py runs/cpu_study act_near workspace near
"""
import collections
import sys

import numpy as np

BUCKETS = ((0, 1, "t = 0"), (1, 24, "0 < t < 24"), (24, 48, "24 ≤ t < 48"), (48, 72, "48 ≤ t < 72"), (72, 10**9, "t ≥ 72"))


def main() -> None:
    from _training_frames import policy_and_frames

    name, policy, ds = policy_and_frames(sys.argv[1:])
    index = [(i, ds.locate(i)[1]) for i in range(0, len(ds), 3)]
    errors = collections.defaultdict(list)
    for k in range(0, len(index), 64):
        chunk = index[k:k + 64]
        predicted, true = last_targets(policy, ds, [i for i, _ in chunk])
        err = np.linalg.norm(predicted - true, axis=-1) * 100
        for (_, t), e in zip(chunk, err):
            errors[next(label for lo, hi, label in BUCKETS if lo <= t < hi)].append(e)
    for _, _, label in BUCKETS:
        v = np.array(errors[label])
        print(f"{name} {label}: n = {len(v)}, median {np.median(v):.1f} cm, p90 {np.percentile(v, 90):.1f} cm")
    # Does the prediction from home depend on the image? Its spread over every demo's home frame against the demos'.
    homes = [i for i in range(len(ds)) if ds.locate(i)[1] == 0]
    predicted, true = last_targets(policy, ds, homes)
    spread = lambda xyz: " / ".join(f"{v:.1f}" for v in xyz.std(0)[:2] * 100)
    print(f"{name} home frames (n = {len(homes)}): spread (std, x / y) of the predicted targets {spread(predicted)} cm, "
          f"of the demos' {spread(true)} cm")


def last_targets(policy, ds, indices):
    """The policy's last predicted target and the demo's, (n, 3) world metres each, for these samples."""
    import torch

    from pxp.experiment.training import batch_cameras

    samples = [ds[i] for i in indices]
    batch = {key: torch.as_tensor(np.stack([s[key] for s in samples])) for key in samples[0]}
    with torch.no_grad():
        decoded = policy.decode(policy.forward(batch), batch_cameras(batch))
    return decoded["xyz"][:, -1], batch["target_pos"].numpy()[:, -1]


if __name__ == "__main__":
    main()
