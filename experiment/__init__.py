"""pxp.experiment: the task-agnostic experiment machinery built on :mod:`pxp.core`.

The policy wrapper and its checkpoints, the training loop, the demo format and loader, the rollout
loop, the evaluation driver, scoring, report assembly, the probe driver, generic plots and video.
It knows contracts (:mod:`pxp.core.contracts`), never a particular plugin: what is specific to a
head, a scene or a task lives in that plugin's folder under ``plugins/``.
"""
