"""Datasets held in memory as uint8 image tensors, each loaded once per process."""

from __future__ import annotations

import gzip
import importlib.util
import math
import os
import shutil
import socket
import struct
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from core.formats import DIGITS_FORMAT, MNIST_FORMAT, InputFormat

if TYPE_CHECKING:  # torch and numpy are imported where arrays are made: the home page lists datasets without them
    import numpy as np
    import torch

DATA_DIR_ENV = "DIGIT_STUDIO_DATA"
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_TIMEOUT_SECONDS = 20
DOWNLOAD_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}  # torchvision's class names: ROOT/<name>/raw
DIGIT_NAMES = tuple(str(d) for d in range(10))
FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


class DatasetUnavailable(RuntimeError):
    """A dataset that is not on this machine and could not be fetched; str() says what to do."""


@dataclass(frozen=True)
class Dataset:
    """A whole dataset in memory: images are uint8 (N, H, W) in 0..input_format.max_value."""

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: tuple[str, ...]
    mean: float  # normalisation applied after scaling pixels to 0..1 (digits: to 0..16, raw)
    std: float
    input_format: InputFormat

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[-1])

    @property
    def pixel_scale(self) -> float:
        """What pixels are divided by before normalisation (255 for MNIST, 1 for the raw 0..16 digits)."""
        return pixel_scale_for(self.input_format)


@dataclass(frozen=True)
class DatasetSpec:
    """What the registry knows about a dataset before loading it."""

    name: str
    title: str
    description: str
    class_names: tuple[str, ...]
    mean: float
    std: float
    input_format: InputFormat
    loader: Callable[[Path], Dataset]
    locator: Callable[[Path], Path | None]  # where its files are, or None when absent


def pixel_scale_for(input_format: InputFormat) -> float:
    """The digits recipe feeds raw 0..16 values; MNIST-style data is scaled to 0..1 as ToTensor does."""
    return 1.0 if input_format.style == "digits" else float(input_format.max_value)


def default_data_dir() -> Path:
    """The data root: $DIGIT_STUDIO_DATA, else ./data."""
    return Path(os.environ.get(DATA_DIR_ENV) or "data")


DIGITS_TEST_SHARE = 0.25  # train_test_split's default, as the recipe split them


def _load_digits(_: Path) -> Dataset:
    """scikit-learn's 8x8 digits, split as the recipe's `train_test_split(images, target, random_state=0)` splits
    them, read from scikit-learn's own file without importing scikit-learn: `sklearn.datasets` costs a process a
    second of imports (scipy among them) before the first of its 1,797 images (tests/test_data.py checks the split is
    scikit-learn's own)."""
    import numpy as np

    table = np.loadtxt(_digits_file(), delimiter=",", dtype=np.uint8)  # 64 pixels (whole numbers 0..16), the label
    images, labels = table[:, :-1].reshape(-1, 8, 8), table[:, -1]
    order = np.random.RandomState(0).permutation(len(labels))  # ShuffleSplit's draw for random_state=0
    test, train = np.split(order, [math.ceil(DIGITS_TEST_SHARE * len(labels))])
    return _dataset("digits", (images[train], labels[train], images[test], labels[test]))


def _digits_file() -> Path:
    """scikit-learn's digits.csv.gz, found without importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    places = spec.submodule_search_locations if spec else None
    if not places:
        raise DatasetUnavailable("scikit-learn is not installed: run `pip install -r requirements.txt`.")
    path = Path(next(iter(places))) / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        raise DatasetUnavailable(f"scikit-learn's digits are not at {path}: reinstall scikit-learn (requirements.txt).")
    return path


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST's format), gzipped or not, without unpickling anything."""
    import numpy as np  # here: the home page lists datasets without numpy's import

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as stream:
        raw = stream.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise DatasetUnavailable(f"{path} is not an IDX file of unsigned bytes.")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DatasetUnavailable(f"{path} is truncated: expected {int(np.prod(shape))} values, found {data.size}.")
    return data.reshape(shape)


IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _idx_folder(candidates: list[Path]) -> Path | None:
    """The first folder holding all four IDX files."""
    for folder in candidates:
        if all(_idx_file(folder, stem) for stem in IDX_STEMS):
            return folder
    return None


def _locate_mnist(root: Path) -> Path | None:
    return _idx_folder([root / "MNIST" / "raw", root / "MNIST", root])


def _locate_fashion(root: Path) -> Path | None:
    return _idx_folder([root / "FashionMNIST" / "raw", root / "FashionMNIST", FASHION_SYSTEM_DIR])


def _idx_count(path: Path) -> int | None:
    """The number of items an IDX file's header declares (its first dimension), reading 8 bytes, not the file."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as stream:
            header = stream.read(8)
    except (OSError, EOFError):
        return None
    return struct.unpack(">I", header[4:8])[0] if len(header) == 8 and header[:3] == b"\0\0\x08" else None


def split_sizes_on_disk(name: str, root: Path | None = None) -> tuple[int, int] | None:
    """(training, test) images of an IDX dataset as its files' headers state them (a subset of MNIST says so), without
    loading it; None for the digits, a dataset that is absent, or a header that cannot be read."""
    spec = dataset_spec(name)
    folder = spec.locator(Path(root) if root else default_data_dir()) if name != "digits" else None
    if folder is None:
        return None
    counts = [_idx_count(_idx_file(folder, stem)) for stem in (IDX_STEMS[1], IDX_STEMS[3])]  # type: ignore[arg-type]
    return (counts[0], counts[1]) if None not in counts else None  # type: ignore[return-value]


def _load_idx_dataset(name: str, folder: Path) -> Dataset:
    arrays = [read_idx(_idx_file(folder, stem)) for stem in IDX_STEMS]  # type: ignore[arg-type]
    return _dataset(name, tuple(arrays))


def _dataset(name: str, arrays: tuple[np.ndarray, ...]) -> Dataset:
    import numpy as np
    import torch

    x_train, y_train, x_test, y_test = arrays
    spec = DATASETS[name]
    as_images = lambda a: torch.from_numpy(np.array(a, dtype=np.uint8))  # a writable copy  # noqa: E731
    as_labels = lambda a: torch.from_numpy(np.asarray(a, dtype=np.int64))  # noqa: E731
    return Dataset(name, as_images(x_train), as_labels(y_train), as_images(x_test), as_labels(y_test),
                   spec.class_names, spec.mean, spec.std, spec.input_format)


def _idx_loader(name: str) -> Callable[[Path], Dataset]:
    def load(root: Path) -> Dataset:
        folder = DATASETS[name].locator(root)
        if folder is None:
            raise DatasetUnavailable(missing_message(name, root))
        return _load_idx_dataset(name, folder)
    return load


DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec("digits", "scikit-learn digits (8x8)",
                          "1,797 handwritten digits of 8x8 pixels that come with scikit-learn: always available.",
                          DIGIT_NAMES, 0.0, 1.0, DIGITS_FORMAT, _load_digits, lambda root: Path("sklearn")),
    "mnist": DatasetSpec("mnist", "MNIST (28x28)", "The classic set: 70,000 handwritten digits, 60,000 to train on and 10,000 to test.",
                         DIGIT_NAMES, 0.1307, 0.3081, MNIST_FORMAT, _idx_loader("mnist"), _locate_mnist),
    "fashion-mnist": DatasetSpec("fashion-mnist", "Fashion-MNIST (28x28)",
                                 "70,000 pictures of clothes in MNIST's format: harder to tell apart than digits.",
                                 FASHION_NAMES, 0.2860, 0.3530, MNIST_FORMAT, _idx_loader("fashion-mnist"),
                                 _locate_fashion),
}


def dataset_spec(name: str) -> DatasetSpec:
    """The registry entry for `name`, or ValueError listing the known names."""
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}.")
    return DATASETS[name]


def missing_message(name: str, root: Path) -> str:
    """One sentence on how to get a dataset that is absent, and what works now."""
    if name == "fashion-mnist":
        how = f"install the Debian package dataset-fashion-mnist, or put its IDX files in {root / 'FashionMNIST' / 'raw'}"
    else:
        how = f"connect to the internet and train on it (it downloads once), or put its IDX files in {root / 'MNIST' / 'raw'}"
    return f"{DATASETS[name].title} is not on this machine: {how}; the digits dataset works now."


def is_available(name: str, root: Path | None = None) -> bool:
    """Whether `name` can be loaded without a download."""
    return dataset_spec(name).locator(Path(root) if root else default_data_dir()) is not None


_cache: dict[tuple[str, str], Dataset] = {}
_cache_lock = threading.Lock()


def load_dataset(name: str, root: Path | str | None = None) -> Dataset:
    """Load a dataset once per process (later calls return the same object: never mutate it)."""
    spec = dataset_spec(name)
    root_path = Path(root) if root else default_data_dir()
    key = (name, str(root_path.resolve()))
    with _cache_lock:
        if key not in _cache:
            _cache[key] = spec.loader(root_path)
        return _cache[key]


def download_dataset(name: str, root: Path | str | None = None) -> None:
    """Fetch MNIST or Fashion-MNIST with torchvision; DatasetUnavailable with one sentence when offline.

    The files download into a private temporary folder and move into `root` only once all are there: a data
    folder that is a system folder (or a typo) gets nothing, not even an empty MNIST/raw, when the download fails.
    """
    root_path = Path(root) if root else default_data_dir()
    if name == "digits" or is_available(name, root_path):
        return
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_SECONDS)  # an offline machine must not hang the app
    try:
        with tempfile.TemporaryDirectory(prefix="digit-studio-download-") as staging:
            _fetch(name, Path(staging), root_path)
            _move_files(Path(staging) / DOWNLOAD_FOLDERS[name] / "raw", root_path / DOWNLOAD_FOLDERS[name] / "raw", name)
    finally:
        socket.setdefaulttimeout(previous)


def _fetch(name: str, staging: Path, root: Path) -> None:
    from torchvision import datasets

    fetcher = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
    try:
        for train in (True, False):
            fetcher(str(staging), train=train, download=True)
    except Exception as error:  # torchvision raises many kinds when offline
        raise DatasetUnavailable(missing_message(name, root) + f" (download failed: {type(error).__name__})") from None


def _move_files(source: Path, target: Path, name: str) -> None:
    """The downloaded files into the data folder, created now that there is something to put in it."""
    try:
        target.mkdir(parents=True, exist_ok=True)
        for path in source.iterdir():
            shutil.move(path, target / path.name)
    except OSError as error:
        raise DatasetUnavailable(f"{DATASETS[name].title} downloaded, but could not be saved in {target} "
                                 f"({error.strerror or error}); choose another data folder.") from None


def ensure_dataset(name: str, root: Path | str | None = None) -> Dataset:
    """Load a dataset, downloading it first when it is missing and the machine is online."""
    download_dataset(name, root)
    return load_dataset(name, root)
