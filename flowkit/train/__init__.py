"""Training continuous normalizing flows: configuration, loop, checkpoints, outputs.

``flowkit train`` (see :mod:`flowkit.cli.train_cmd`) is a thin layer over
:func:`train`; :class:`Trainer` exposes the loop step by step.
"""

from flowkit.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from flowkit.train.config import ConfigError, TrainConfig, dump_toml, load_toml
from flowkit.train.result import TrainResult
from flowkit.train.run import train, write_outputs
from flowkit.train.rundir import RunDirError, RunLockedError
from flowkit.train.trainer import Trainer, TrainingDivergedError

__all__ = [
    "CheckpointError",
    "ConfigError",
    "RunDirError",
    "RunLockedError",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingDivergedError",
    "dump_toml",
    "load_checkpoint",
    "load_toml",
    "save_checkpoint",
    "train",
    "write_outputs",
]
