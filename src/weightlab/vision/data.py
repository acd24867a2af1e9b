"""Image data sets as uint8 arrays of shape (N, C, 32, 32): Fashion-MNIST (default) and CIFAR-10.

Fashion-MNIST comes from Debian's `dataset-fashion-mnist` (IDX files); its 28x28 grey images
are padded to 32x32 and kept with one channel on disk, replicated to RGB by `as_rgb`, so every
architecture written for CIFAR-10 runs on it unchanged.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from weightlab.errors import DataNotFoundError, InputError
from weightlab.io import check_md5, read_numpy_pickle

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
FASHION_MNIST_HELP = (
    "Install Debian's package with `apt-get install dataset-fashion-mnist` "
    f"(it puts the IDX files in {FASHION_MNIST_ROOT}), or set data.root in config.yaml "
    "to a folder holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz."
)
CIFAR10_HELP = (
    "Put the python version of CIFAR-10 (the folder cifar-10-batches-py) under data.root, "
    "or set data.download: true on a machine with a network and torchvision installed "
    "(`pip install weightlab[cifar]`)."
)
# CIFAR-10's python batches are pickles, and loading a pickle can run code: each batch is read
# only when its md5 is the published one (torchvision.datasets.CIFAR10's list; the archive
# cifar-10-python.tar.gz has md5 c58f30108f718f92721af3b95e74349a), and then by an unpickler that
# rebuilds numpy arrays and nothing else.
CIFAR10_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
CIFAR10_FIX = ("replace the folder cifar-10-batches-py with the one unpacked from the original cifar-10-python.tar.gz "
               "(md5 c58f30108f718f92721af3b95e74349a)")
FASHION_MNIST_FIX = ("restore it: `apt-get install --reinstall dataset-fashion-mnist`, or copy the original file again "
                     "into data.root")
# Per-channel statistics used to standardise pixels; one pair for every data set keeps the
# models' inputs comparable across presets.
PIXEL_MEAN = 0.5
PIXEL_STD = 0.25


@dataclass(frozen=True)
class ImageSplit:
    images: np.ndarray  # uint8, (N, C, 32, 32)
    labels: np.ndarray  # int64, (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> "ImageSplit":
        return ImageSplit(self.images[indices], self.labels[indices])


@dataclass(frozen=True)
class ImageDataset:
    name: str
    classes: tuple[str, ...]
    train: ImageSplit
    test: ImageSplit


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a numpy array of its declared shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise InputError(f"{path} is damaged ({type(err).__name__}: {err}); {FASHION_MNIST_FIX}.") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise InputError(f"{path} is not an IDX file of unsigned bytes (bad magic number); {FASHION_MNIST_FIX}.")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise InputError(f"{path} declares shape {dims} but holds {data.size} values; the file is truncated: {FASHION_MNIST_FIX}.")
    return data.reshape(dims)


def pad_to_32(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) grey images -> (N, 1, 32, 32), zero-padded by two pixels on each side."""
    padded = np.zeros((images.shape[0], 1, 32, 32), dtype=np.uint8)
    padded[:, 0, 2:30, 2:30] = images
    return padded


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.exists():
            return candidate
    raise DataNotFoundError(f"Fashion-MNIST file {stem}(.gz) not found in {root}. {FASHION_MNIST_HELP}")


def load_fashion_mnist(root: str | Path = FASHION_MNIST_ROOT) -> ImageDataset:
    root = Path(root)
    if not root.is_dir():
        raise DataNotFoundError(f"Fashion-MNIST folder {root} does not exist. {FASHION_MNIST_HELP}")
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_find(root, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_find(root, f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
        if len(images) != len(labels):
            raise InputError(f"{root}: {split} has {len(images)} images but {len(labels)} labels.")
        splits[split] = ImageSplit(pad_to_32(images), labels)
    return ImageDataset("fashion_mnist", FASHION_MNIST_CLASSES, splits["train"], splits["test"])


def _read_cifar_batch(path: Path, verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """One python batch of CIFAR-10: its md5 checked first (`verify`), then unpickled arrays only."""
    if not path.is_file():
        raise DataNotFoundError(f"CIFAR-10 batch {path} does not exist. {CIFAR10_HELP}")
    if verify:
        check_md5(path, CIFAR10_MD5[path.name], CIFAR10_FIX)
    batch = read_numpy_pickle(path, CIFAR10_FIX)
    try:
        images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{path} is not a CIFAR-10 batch ({type(err).__name__}: {err}); {CIFAR10_FIX}.") from err
    if len(images) != len(labels):
        raise InputError(f"{path} has {len(images)} images but {len(labels)} labels; {CIFAR10_FIX}.")
    return images, labels


def _download_cifar10(root: Path) -> None:
    try:
        from torchvision.datasets import CIFAR10
    except ImportError as err:
        raise DataNotFoundError(f"data.download needs torchvision, which is not installed. {CIFAR10_HELP}") from err
    CIFAR10(root=str(root), train=True, download=True)


def load_cifar10(root: str | Path, download: bool = False) -> ImageDataset:
    """Read CIFAR-10's python batches with numpy (torchvision only to download them)."""
    folder = Path(root) / "cifar-10-batches-py"
    if not folder.is_dir() and download:
        _download_cifar10(Path(root))
    if not folder.is_dir():
        raise DataNotFoundError(f"CIFAR-10 folder {folder} does not exist. {CIFAR10_HELP}")
    train = [_read_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    test_images, test_labels = _read_cifar_batch(folder / "test_batch")
    return ImageDataset(
        "cifar10",
        CIFAR10_CLASSES,
        ImageSplit(np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train])),
        ImageSplit(test_images, test_labels),
    )


def load_dataset(name: str, root: str | None = None, download: bool = False) -> ImageDataset:
    if name == "fashion_mnist":
        return load_fashion_mnist(root or FASHION_MNIST_ROOT)
    if name == "cifar10":
        return load_cifar10(root or "data", download=download)
    raise InputError(f"unknown data set '{name}'; choose fashion_mnist or cifar10.")


def stratified_subset(labels: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a class-balanced random subset of `size` examples (all when None)."""
    if size is None or size >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = np.full(len(classes), size // len(classes))
    per_class[: size % len(classes)] += 1
    chosen = [rng.choice(np.flatnonzero(labels == c), n, replace=False) for c, n in zip(classes, per_class)]
    return np.sort(np.concatenate(chosen))


def subsample(dataset: ImageDataset, train_size: int | None, test_size: int | None, seed: int) -> ImageDataset:
    return ImageDataset(
        dataset.name,
        dataset.classes,
        dataset.train.subset(stratified_subset(dataset.train.labels, train_size, seed)),
        dataset.test.subset(stratified_subset(dataset.test.labels, test_size, seed + 1)),
    )


def dataset_to_arrays(dataset: ImageDataset) -> dict[str, np.ndarray]:
    return {
        "name": np.array(dataset.name),
        "classes": np.array(dataset.classes),
        "train_images": dataset.train.images,
        "train_labels": dataset.train.labels,
        "test_images": dataset.test.images,
        "test_labels": dataset.test.labels,
    }


DATASET_ARRAYS = ("name", "classes", "train_images", "train_labels", "test_images", "test_labels")


def dataset_from_arrays(arrays: dict[str, np.ndarray]) -> ImageDataset:
    """The data set of `dataset_to_arrays`' arrays (results/data/images.npz), checked to be whole."""
    fix = "delete results/data/images.npz and re-run, Snakemake rebuilds it"
    missing = [key for key in DATASET_ARRAYS if key not in arrays]
    if missing:
        raise InputError(f"the image archive lacks the arrays {missing}; {fix}.")
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 4 or images.shape[2:] != (32, 32) or len(images) != len(labels):
            raise InputError(f"the image archive's {split} split has images {images.shape} and labels {labels.shape}; {fix}.")
    return ImageDataset(
        str(arrays["name"]),
        tuple(str(c) for c in arrays["classes"]),
        ImageSplit(arrays["train_images"], arrays["train_labels"]),
        ImageSplit(arrays["test_images"], arrays["test_labels"]),
    )


def as_rgb(images: np.ndarray) -> np.ndarray:
    """Replicate a single grey channel to three; RGB images pass through."""
    if images.shape[1] == 3:
        return images
    return np.repeat(images, 3, axis=1)


def to_float_batch(images: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, C, H, W) -> standardised float32 RGB in channels_last layout on `device`."""
    tensor = torch.as_tensor(images).to(device)
    if tensor.shape[1] == 1:
        tensor = tensor.expand(-1, 3, -1, -1)
    tensor = (tensor.float() / 255.0 - PIXEL_MEAN) / PIXEL_STD
    return tensor.contiguous(memory_format=torch.channels_last)
