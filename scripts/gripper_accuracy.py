#!/usr/bin/env python3
"""Open-loop gripper accuracy of a trained policy on its own training frames, per future step t, split by
whether the label differs from the current gripper state (a close or release happens within t steps).
Shows whether a policy knows *when* the gripper acts, without a rollout.

    python scripts/gripper_accuracy.py RUN POLICY DATASET [FILTER_KEY]
    python scripts/gripper_accuracy.py runs/cpu_study para_left workspace left
"""
import collections
import sys

import numpy as np


def main() -> None:
    import torch
    from _training_frames import policy_and_frames

    name, policy, ds = policy_and_frames(sys.argv[1:])
    right = collections.Counter()
    total = collections.Counter()
    indices = list(range(0, len(ds), 5))
    for k in range(0, len(indices), 64):
        samples = [ds[i] for i in indices[k:k + 64]]
        batch = {key: torch.as_tensor(np.stack([s[key] for s in samples])) for key in samples[0]}
        with torch.no_grad():  # inference: each step's gripper read where the policy itself points
            predicted = policy.forward(batch)["gripper_logits"].argmax(-1).numpy()
        label = batch["target_gripper"].numpy().round().astype(int)
        changes = label != batch["gripper"].numpy().round().astype(int)[:, None]
        for t in range(label.shape[1]):
            for changed in (False, True):
                rows = changes[:, t] == changed
                total[t, changed] += int(rows.sum())
                right[t, changed] += int((predicted[rows, t] == label[rows, t]).sum())
    print(f"{name}: gripper accuracy on its training frames (every 5th), by future step")
    print("step | label = current state | label changes (close / release ahead)")
    for t in range(policy.horizon):
        cells = [f"{right[t, c] / total[t, c]:.3f} (n = {total[t, c]})" if total[t, c] else "—" for c in (False, True)]
        print(f"t{t}   | {cells[0]} | {cells[1]}")
    n = sum(total.values())
    print(f"all  | {sum(right.values()) / n:.3f} (n = {n})")


if __name__ == "__main__":
    main()
