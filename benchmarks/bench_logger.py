"""What the TensorBoard logger costs a training run: one logged step's events vs the training steps between them.

    python benchmarks/bench_logger.py                      # the quickstart's PARA policy (small CNN, 96 px, batch 32)
    python benchmarks/bench_logger.py --head act

Training fires ``pxp_training_step`` once per ``LOG_EVERY`` steps. This times, in the same run, the quickstart's
training step (``LoopStep``, what ``train()`` runs) and one event through ``RunEvents`` to the TensorBoard logger
(a metrics row written and flushed), and prints the logger's share of training time (goal: < 0.5 %).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import build, make_batch  # noqa: E402  (the same policy and batch as the training benchmark)


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--head", choices=["para", "act"], default="para")
    ap.add_argument("--steps", type=int, default=10, help="training steps per timed round")
    ap.add_argument("--events", type=int, default=200, help="events per timed round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    args.device, args.backbone, args.size, args.stages, args.batch = "cpu", "small_cnn", 96, 3, 32
    args.horizon, args.heatmap, args.hidden = 4, 32, 32

    import torch

    from pxp.core.events import RunEvents, RunInfo
    from pxp.core.plugins import get_registry
    from pxp.core.spec import TrainConfig
    from pxp.experiment.training import LOG_EVERY, LoopStep, make_optimizer

    torch.manual_seed(0)
    policy, objective = build(args)
    tcfg = TrainConfig(steps=1000, batch_size=args.batch, lr=1e-3)
    loop = LoopStep(policy, objective, make_optimizer(policy, tcfg), tcfg, None)
    batch = make_batch(args.batch, args.horizon, args.size, "cpu")
    row = {"step": 0, "split": "train", "lr": 1e-3, "elapsed_s": 1.0, "loss": 2.5, "loss/volume_ce": 2.0,
           "loss/gripper_ce": 0.5, "steps_per_s": 10.0}
    with tempfile.TemporaryDirectory() as tmp:
        events = RunEvents(get_registry(), RunInfo(Path(tmp), {"loggers": [{"type": "tensorboard"}]}))
        events.fire("pxp_training_step", policy="warm-up", step=0, metrics=row)
        for _ in range(2):
            loop(batch, 0, 0.0)
        step_s, event_s = [], []
        for r in range(args.rounds):
            t0 = time.perf_counter()
            for i in range(args.steps):
                loop(batch, i, 0.0)
            step_s.append((time.perf_counter() - t0) / args.steps)
            t0 = time.perf_counter()
            for i in range(args.events):
                events.fire("pxp_training_step", policy="para", step=r * args.events + i, metrics=row)
            event_s.append((time.perf_counter() - t0) / args.events)
        events.close()
    step, event = statistics.median(step_s), statistics.median(event_s)
    share = event / (event + LOG_EVERY * step)
    print(f"training step {1e3 * step:.1f} ms; one logged step's events {1e3 * event:.3f} ms (every {LOG_EVERY} steps)")
    print(f"the TensorBoard logger's share of training time: {100 * share:.3f} % (goal < 0.5 %)")
    return share


if __name__ == "__main__":
    sys.exit(0 if main() < 0.005 else 1)
