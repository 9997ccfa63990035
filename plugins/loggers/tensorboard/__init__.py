"""TensorBoard: every policy's training curves and every evaluation's rates in ``<run>/tensorboard/``.

Switched on in a spec with ``loggers: [{type: tensorboard}]`` (``pip install "pxp[tensorboard]"``), then
``tensorboard --logdir runs/<name>``. Each policy is one TensorBoard run (``tensorboard/<policy>/``), so the
policies' curves overlay: ``train/loss`` and each loss part, ``train/lr``, ``train/steps_per_s``, the held-out
metrics at each evaluation (``holdout/…``, or ``train-subset/…`` without held-out demos), and each evaluation's
rates from its summary (``<evaluation>/<rate>``, e.g. ``left_to_right/place``) at the policy's last step.
"""
from __future__ import annotations

import importlib.util
from typing import Literal

from pydantic import Field, model_validator

from pxp.core.contracts import LoggerConfig

from pxp.core.hookspecs import hookimpl

__all__ = ["TensorBoardConfig", "make_tensorboard_logger"]


class TensorBoardConfig(LoggerConfig):
    type: Literal["tensorboard"] = "tensorboard"
    dir: str = Field("tensorboard", pattern=r"^[A-Za-z0-9_.\-]+$",
                     description="folder in the run directory the event files go to (one subfolder per policy)")

    @model_validator(mode="after")
    def _package_installed(self):
        if importlib.util.find_spec("tensorboard") is None:
            raise ValueError('the tensorboard logger needs the tensorboard package: pip install "pxp[tensorboard]"')
        return self


def make_tensorboard_logger(config: TensorBoardConfig):
    """``factory(config)``: an observer of the run's events. Built when the run (or a worker's training unit)
    starts, so importing torch's SummaryWriter here costs no training budget (``train.minutes``)."""
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401

    from pxp.plugins.loggers.tensorboard.logger import TensorBoardLogger

    return TensorBoardLogger(config)


@hookimpl
def pxp_register_loggers(register):
    register("tensorboard", TensorBoardConfig, make_tensorboard_logger,
             summary="training curves per policy and success rates per evaluation, for TensorBoard")
