"""Training and evaluation behind the ``attnunet`` command: patches, loop, checkpoints.

Everything here works for 2D and 3D and for any model of the zoo. The command-line tool
(:mod:`attnunet.cli`) is a thin layer over these functions, so a script can use them too:

* :class:`TrainSettings`: the recipe (patch size, batch, epochs, optimiser, augmentation,
  validation), JSON-serialisable so a run records exactly how it was trained;
  :func:`recipe_changes` tells which settings differ from a saved recipe.
* :class:`Volume`: one image ``(C, *S)`` with its label map ``(*S)``.
* :class:`PatchSampler`: random, foreground-biased, augmented training patches drawn from
  one ``torch.Generator``, so a seeded run (and a resumed one) repeats exactly.
* :func:`train`: the loop, with validation by sliding-window inference every epoch, best-
  metric tracking, a checkpoint after every epoch (``--resume`` continues from it) and
  DistributedDataParallel when started by ``torchrun``.
* :func:`evaluate` and :func:`predict`: per-image metrics and label maps for whole images
  of any size.
* :func:`recalibrate_batchnorm`: exact batch-norm statistics after training.
* :class:`Task`: what a model is trained for (dimensions, channels, label values,
  preprocessing), computed once from the training cases and stored with the model so
  that prediction repeats it and writes the dataset's label values.

The modules, one per stage (every name is importable from here):

* ``settings``: :class:`TrainSettings`, :func:`recipe_changes`, :class:`Volume`,
  :data:`CHECKPOINT`;
* ``sampling``: :class:`PatchSampler`;
* ``loader``: :class:`PatchLoader`, :class:`PatchBatches`, :func:`batch_seed`,
  :func:`default_workers`;
* ``loop``: :func:`train`, :class:`EpochRecord`, :class:`TrainResult`, :func:`jsonable`;
* ``evaluation``: :func:`evaluate`, :func:`score_case`, :func:`object_one_piece_fraction`,
  :data:`METRICS`;
* ``prediction``: :func:`predict`, :func:`predict_logits`;
* ``distributed``: :func:`init_distributed`, :func:`torch_threads`;
* ``progress``: :class:`Progress`;
* ``calibration``: :func:`recalibrate_batchnorm`, :func:`batchnorm_layers`;
* ``task``: :class:`Task`, :func:`legacy_task`.
"""

from __future__ import annotations

from attnunet.training.calibration import batchnorm_layers, recalibrate_batchnorm
from attnunet.training.distributed import init_distributed, torch_threads
from attnunet.training.evaluation import METRICS, evaluate, object_one_piece_fraction, score_case
from attnunet.training.loader import PatchBatches, PatchLoader, batch_seed, default_workers
from attnunet.training.loop import EpochRecord, TrainResult, jsonable, train
from attnunet.training.prediction import predict, predict_logits
from attnunet.training.progress import Progress
from attnunet.training.sampling import PatchSampler
from attnunet.training.settings import CHECKPOINT, TrainSettings, Volume, recipe_changes
from attnunet.training.task import Task, legacy_task

__all__ = [
    "CHECKPOINT",
    "METRICS",
    "EpochRecord",
    "PatchBatches",
    "PatchLoader",
    "PatchSampler",
    "Progress",
    "Task",
    "TrainResult",
    "TrainSettings",
    "Volume",
    "batch_seed",
    "batchnorm_layers",
    "default_workers",
    "evaluate",
    "init_distributed",
    "jsonable",
    "legacy_task",
    "object_one_piece_fraction",
    "predict",
    "predict_logits",
    "recalibrate_batchnorm",
    "recipe_changes",
    "score_case",
    "torch_threads",
    "train",
]
