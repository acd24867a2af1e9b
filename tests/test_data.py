"""The data layer: IDX parsing, padding, subsets, clear errors for missing data."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from weightlab.errors import DataNotFoundError, InputError
from weightlab.vision.data import (
    FASHION_MNIST_ROOT,
    as_rgb,
    dataset_from_arrays,
    dataset_to_arrays,
    load_cifar10,
    load_dataset,
    load_fashion_mnist,
    read_idx,
    stratified_subset,
    to_float_batch,
)


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def make_fake_fashion_mnist(root: Path, n_train: int = 20, n_test: int = 10) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)


def test_idx_round_trip_and_padding(tmp_path):
    make_fake_fashion_mnist(tmp_path)
    raw = read_idx(tmp_path / "train-images-idx3-ubyte.gz")
    dataset = load_fashion_mnist(tmp_path)
    assert dataset.train.images.shape == (20, 1, 32, 32)
    assert np.array_equal(dataset.train.images[:, 0, 2:30, 2:30], raw)
    assert dataset.train.images[:, :, :2].sum() == 0 and dataset.train.images[:, :, :, 30:].sum() == 0
    assert list(dataset.test.labels) == list(np.arange(10) % 10)


def test_truncated_idx_is_reported(tmp_path):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 100) + b"\x00" * 10)
    with pytest.raises(InputError, match="truncated"):
        read_idx(path)


def test_missing_fashion_mnist_says_how_to_install(tmp_path):
    with pytest.raises(DataNotFoundError, match="apt-get install dataset-fashion-mnist.*data.root"):
        load_fashion_mnist(tmp_path / "nowhere")
    (tmp_path / "partial").mkdir()
    with pytest.raises(DataNotFoundError, match="train-images-idx3-ubyte"):
        load_fashion_mnist(tmp_path / "partial")


def test_missing_cifar_says_what_to_do(tmp_path):
    with pytest.raises(DataNotFoundError, match="cifar-10-batches-py"):
        load_cifar10(tmp_path)


def test_cifar_batches_are_read_with_numpy(tmp_path, monkeypatch):
    import pickle

    import weightlab.vision.data
    from weightlab.io import file_md5

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    checksums = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [1, 2, 3, 4]}
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle)
        checksums[name] = file_md5(folder / name)
    monkeypatch.setattr(weightlab.vision.data, "CIFAR10_MD5", checksums)  # these small batches stand in for the published ones
    dataset = load_dataset("cifar10", str(tmp_path))
    assert dataset.train.images.shape == (20, 3, 32, 32) and dataset.test.images.shape == (4, 3, 32, 32)
    assert list(dataset.train.labels[:4]) == [1, 2, 3, 4]


def test_stratified_subset_is_balanced_and_reproducible():
    labels = np.repeat(np.arange(10), 100)
    first, second = stratified_subset(labels, 50, seed=3), stratified_subset(labels, 50, seed=3)
    assert np.array_equal(first, second)
    assert np.bincount(labels[first]).tolist() == [5] * 10
    assert len(np.unique(first)) == 50
    assert len(stratified_subset(labels, None, 0)) == 1000


def test_arrays_round_trip_and_float_batches(tmp_path):
    make_fake_fashion_mnist(tmp_path)
    dataset = load_fashion_mnist(tmp_path)
    again = dataset_from_arrays(dataset_to_arrays(dataset))
    assert again.classes == dataset.classes and np.array_equal(again.test.images, dataset.test.images)
    batch = to_float_batch(dataset.train.images[:4])
    assert batch.shape == (4, 3, 32, 32) and batch.dtype.is_floating_point
    assert np.array_equal(as_rgb(dataset.train.images[:2])[:, 0], as_rgb(dataset.train.images[:2])[:, 2])


@pytest.mark.skipif(not Path(FASHION_MNIST_ROOT).is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_debian():
    dataset = load_fashion_mnist()
    assert (len(dataset.train), len(dataset.test)) == (60000, 10000)
    assert np.bincount(dataset.test.labels).tolist() == [1000] * 10
