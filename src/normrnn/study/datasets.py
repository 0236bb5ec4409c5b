"""The study's data: its three splits (built-in or a data factory's), each epoch's fresh training sequences, and the
predictors that learn nothing (the floor every model must beat)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from ..data import create_dataset
from .config import StudyConfig
from .factories import batch, load_user_data, size_of, subset
from .metrics import no_learning_guesses, prediction_metrics

__all__ = ["Datasets", "cached_datasets", "fresh_train_set", "load_datasets", "reference_predictors", "train_subset"]


@dataclass(frozen=True)
class Datasets:
    """The study's three splits: built-in video datasets, or a data factory's ``(input, target)`` datasets."""

    train: Dataset[Any]
    val: Dataset[Any]
    test: Dataset[Any]


def load_datasets(config: StudyConfig) -> Datasets:
    """The study's train, validation and test sets (the same for every run: ``data_seed`` fixes them): from the
    config's data factory, or the built-in ``dataset``."""
    if config.data is not None:
        return Datasets(*(load_user_data(config.data, split, config.data_seed) for split in ("train", "val", "test")))
    common: dict[str, Any] = {"seed": config.data_seed, "size": config.size, "frames_in": config.frames_in,
              "frames_out": config.frames_out, "path": config.data_path}
    return Datasets(
        train=create_dataset(config.dataset, config.train_samples, split="train", **common),
        val=create_dataset(config.dataset, config.val_samples, split="val", **common),
        test=create_dataset(config.dataset, config.test_samples, split="test", **common),
    )


def reference_predictors(test: Dataset[Any]) -> dict[str, dict[str, float | None]]:
    """Test metrics of the predictors that learn nothing, the floor any model must beat: all-zero targets, the
    mean target value everywhere, and (frames in, frames out) the last given frame repeated."""
    x, y = batch(test, torch.arange(size_of(test)), torch.device("cpu"))
    return {name: prediction_metrics(g, y).as_row()
            for name, g in no_learning_guesses(x, y).items()}


@functools.lru_cache(maxsize=1)
def cached_datasets(config: StudyConfig) -> Datasets:
    """:func:`load_datasets`, kept for the next run of the same study in this process (a Ray worker)."""
    return load_datasets(config)


def fresh_train_set(config: StudyConfig, seed: int, epoch: int) -> Dataset[Any]:
    """The ``train_samples`` training sequences of one epoch of a ``fresh_train`` study: generated from the training
    split's digits with the stream ``(data_seed, run seed, epoch)``, the same in every process and on resume."""
    return create_dataset(config.dataset, config.train_samples, split="train", seed=(config.data_seed, seed, epoch),
                          size=config.size, frames_in=config.frames_in, frames_out=config.frames_out)


def train_subset(data: Datasets) -> Dataset[Any]:
    """The fixed part of the training set that ``train_mse`` is measured on: its first sequences, as many as the
    test set has, so train and test MSE average over as many samples."""
    return subset(data.train, min(size_of(data.train), size_of(data.test)))
