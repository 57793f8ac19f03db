"""Digit collections: plain folders in torchvision's ImageFolder layout (NAME/0/*.png ... NAME/9/*.png).

People fill them from Predict, by hand, or unzip one somebody shared, so everything read from them is untrusted:
names are checked, links leading out of a folder and files that are not images are never read, and images are
decoded by core.images' safe loader only.
"""

from __future__ import annotations

import io
import re
import secrets
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from core.data import DIGIT_NAMES, DatasetUnavailable, default_data_dir
from core.images import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, MIN_IMAGE_SIDE, ImageError, load_image
from core.store import write_new_file

COLLECTIONS_FOLDER = "collections"  # under the data folder: DATA/collections/NAME
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")  # no dots: no "..", no hidden or suffixed names
NAME_RULE = "1 to 64 letters, digits, '-' or '_', starting with a letter or digit"
CLASS_NAMES = DIGIT_NAMES
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")  # what core.images decodes
MAX_COLLECTION_IMAGES = 20_000  # each is decoded and preprocessed when the collection is loaded
SAMPLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")  # a file name in a class folder that may be deleted


class CollectionError(DatasetUnavailable):
    """A collection or image folder that cannot be used or changed as asked; str() is one sentence."""


@dataclass(frozen=True)
class Sample:
    """One image of a collection: its file and the class its folder names."""

    path: Path
    label: int

    @property
    def file_name(self) -> str:
        return self.path.name

    @property
    def relative(self) -> str:
        """"3/20261203-101500-1a2b3c4d.png": how messages name it."""
        return f"{self.label}/{self.path.name}"


@dataclass(frozen=True)
class FolderScan:
    """What a folder holds: its images by class, the files skipped and, if it cannot be trained on, why."""

    folder: Path
    samples: tuple[Sample, ...]
    skipped: tuple[str, ...]  # relative names of files that are not images, hidden, or links leading out
    problem: str | None  # one sentence; None when the folder is a usable dataset

    @property
    def counts(self) -> dict[int, int]:
        """Images per class, for the classes that have any."""
        return dict(sorted(Counter(sample.label for sample in self.samples).items()))

    @property
    def notice(self) -> str | None:
        """One sentence on what was skipped, or None."""
        if not self.skipped:
            return None
        shown = ", ".join(self.skipped[:3]) + (", ..." if len(self.skipped) > 3 else "")
        return (f"{len(self.skipped)} file{'s' if len(self.skipped) != 1 else ''} skipped in {self.folder.name} "
                f"(not {'/'.join(IMAGE_SUFFIXES)} images, hidden, or links leading out of the folder): {shown}.")


def collections_root(data_dir: Path | str | None = None) -> Path:
    """Where collections live: DATA/collections, with DATA the data folder ($DIGIT_STUDIO_DATA, else ./data)."""
    return Path(data_dir or default_data_dir()) / COLLECTIONS_FOLDER


def check_name(name: object) -> str:
    """`name` when it is a plain short collection name; else CollectionError saying what a name may be."""
    if not isinstance(name, str) or NAME_PATTERN.match(name) is None:
        shown = repr(name)[:70]
        raise CollectionError(f"{shown} is not a collection name: use {NAME_RULE}.")
    return name


def check_label(label: object) -> int:
    """`label` as an int when it is one of the classes 0 to 9; else CollectionError."""
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)) or not 0 <= label <= 9:
        raise CollectionError(f"{str(label)[:40]!r} is not one of the classes 0 to 9; nothing was saved.")
    return int(label)


def stays_inside(path: Path, folder: Path) -> bool:
    """Whether `path`, links followed, stays within `folder`."""
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):  # a link loop
        return False


def collection_dir(root: Path | str, name: str) -> Path:
    """The folder of collection `name` under `root`; CollectionError for a bad name or a link leading out of root."""
    folder = Path(root) / check_name(name)
    if (folder.exists() or folder.is_symlink()) and not stays_inside(folder, Path(root)):
        raise CollectionError(f"The collection {name} is a link to somewhere outside {Path(root).name}; it is not used.")
    return folder


def _class_entries(folder: Path) -> tuple[dict[int, Path], list[str], str | None]:
    """The class folders by digit, the top-level names skipped, and a structural problem if any."""
    classes, skipped = {}, []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir():
            continue  # a README or a .DS_Store beside the class folders is no class
        if not stays_inside(entry, folder):
            skipped.append(entry.name)
        elif entry.name in CLASS_NAMES:
            classes[int(entry.name)] = entry
        else:
            return classes, skipped, (f"{folder.name} has a folder named {entry.name[:40]!r}: class folders must be "
                                      f"named 0 to 9, one per digit.")
    return classes, skipped, None


def _images_in(class_dir: Path, label: int, folder: Path) -> tuple[list[Sample], list[str]]:
    """The images of one class folder (regular files with an image suffix, inside the folder) and the rest's names."""
    samples, skipped = [], []
    for path in sorted(class_dir.iterdir()):
        usable = (not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
                  and stays_inside(path, folder))
        if usable:
            samples.append(Sample(path, label))
        else:
            skipped.append(f"{label}/{path.name[:60]}")
    return samples, skipped


def scan_folder(folder: Path | str) -> FolderScan:
    """List an ImageFolder of digits without decoding anything; CollectionError if it is no folder at all."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CollectionError(f"{folder.name or folder} is not a folder of digit images (NAME/0/*.png ... NAME/9/*.png).")
    classes, skipped, problem = _class_entries(folder)
    samples: list[Sample] = []
    empty = []
    for label, class_dir in classes.items():
        found, passed = _images_in(class_dir, label, folder)
        samples += found
        skipped += passed
        empty += [] if found else [str(label)]
    problem = problem or _content_problem(folder, classes, empty, len(samples))
    return FolderScan(folder, tuple(samples), tuple(skipped), problem)


def _content_problem(folder: Path, classes: dict[int, Path], empty: list[str], count: int) -> str | None:
    if not classes:
        return f"{folder.name} has no class folders: put each digit's images in a folder named after it (0 to 9)."
    if empty:
        return f"{folder.name} has empty class folders ({', '.join(empty)}): add images of those digits or remove them."
    if count > MAX_COLLECTION_IMAGES:
        return f"{folder.name} has {count:,} images, more than the {MAX_COLLECTION_IMAGES:,} a collection may hold."
    return None


@dataclass(frozen=True)
class CollectionInfo:
    """A collection as listed: its images per class, or what is wrong with it (listed all the same)."""

    name: str
    path: Path
    counts: dict[int, int]
    skipped: int
    problem: str | None

    @property
    def size(self) -> int:
        return sum(self.counts.values())


def list_collections(root: Path | str | None = None) -> list[CollectionInfo]:
    """Every collection under `root` (default: collections_root()), by name; one bad folder never hides the others."""
    root = Path(root) if root else collections_root()
    if not root.is_dir():
        return []
    return [_info(root, entry) for entry in sorted(root.iterdir())
            if entry.is_dir() and NAME_PATTERN.match(entry.name)]


def _info(root: Path, folder: Path) -> CollectionInfo:
    try:
        collection_dir(root, folder.name)
        scan = scan_folder(folder)
        return CollectionInfo(folder.name, folder, scan.counts, len(scan.skipped), scan.problem)
    except (CollectionError, OSError) as error:
        reason = str(error) if isinstance(error, CollectionError) else f"{folder.name} cannot be read ({error.strerror})."
        return CollectionInfo(folder.name, folder, {}, 0, reason)


def collection_samples(root: Path | str, name: str) -> list[Sample]:
    """The images of one collection, class by class (for a grid); [] when it does not exist yet."""
    folder = collection_dir(root, name)
    return list(scan_folder(folder).samples) if folder.is_dir() else []


def _as_image(image: Image.Image | np.ndarray | bytes) -> Image.Image:
    """A PIL image from what Predict holds: the decoded upload, the canvas's array, or an upload's bytes."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return load_image(bytes(image)).image  # decoded safely: the saved PNG then reads back the same
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise CollectionError(f"An image array of shape {image.shape} and type {image.dtype} cannot be saved "
                                  "(expected 8-bit grey, RGB or RGBA).")
        return Image.fromarray(image)
    if isinstance(image, Image.Image):
        return image
    raise CollectionError(f"A {type(image).__name__} is not an image; nothing was saved.")


def _png_bytes(image: Image.Image) -> bytes:
    """The image as PNG, within the limits the safe loader reads back (size, pixels, bytes)."""
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS or min(width, height) < MIN_IMAGE_SIDE:
        raise CollectionError(f"A {width}x{height} image cannot be kept: it must be at least {MIN_IMAGE_SIDE} pixels "
                              f"a side and at most {MAX_IMAGE_PIXELS:,} pixels; nothing was saved.")
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    if buffer.tell() > MAX_IMAGE_BYTES:
        raise CollectionError(f"This image is over {MAX_IMAGE_BYTES // (1024 * 1024)} MB as a PNG, more than a "
                              "collection reads back; nothing was saved.")
    return buffer.getvalue()


def new_sample_name() -> str:
    """A unique, sortable file name such as 20261203-101500-1a2b3c4d.png."""
    return f"{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}.png"


def save_sample(root: Path | str, name: str, image: Image.Image | np.ndarray | bytes, label: int) -> Sample:
    """Save the original image, as a new PNG, into collection `name`'s folder for `label` (atomic, never replacing).

    CollectionError (one sentence, nothing saved) for a bad name or label, or an image out of bounds;
    StoreWriteError (an OSError) when the disk refuses.
    """
    label = check_label(label)
    data = _png_bytes(_as_image(image))
    class_dir = collection_dir(root, name) / str(label)
    class_dir.mkdir(parents=True, exist_ok=True)
    if not stays_inside(class_dir, Path(root)):  # a class folder that is a link: never write through it
        raise CollectionError(f"{name}/{label} is a link to somewhere outside the collections; nothing was saved.")
    path = class_dir / new_sample_name()
    try:
        write_new_file(path, data)
    except OSError:
        _remove_if_empty(class_dir)  # an empty class folder would stop training on the whole collection
        raise
    return Sample(path, label)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # it holds other images: it stays
        pass


def delete_sample(root: Path | str, name: str, label: int, file_name: str) -> None:
    """Remove one image of a collection (a link is removed, never its target); an emptied class folder goes too."""
    label = check_label(label)
    if not isinstance(file_name, str) or SAMPLE_NAME.match(file_name) is None:  # no "/", no leading "."
        raise CollectionError(f"{str(file_name)[:70]!r} is not an image of collection {name}.")
    class_dir = collection_dir(root, name) / str(label)
    if not stays_inside(class_dir, Path(root)):
        raise CollectionError(f"{name}/{label} is a link to somewhere outside the collections; nothing was deleted.")
    path = class_dir / file_name
    if not (path.is_symlink() or path.is_file()):
        raise CollectionError(f"{name}/{label}/{file_name} is no longer there.")
    path.unlink()
    _remove_if_empty(class_dir)  # only when that was its last file: an empty class would stop training on the folder


def read_sample(sample: Sample) -> Image.Image:
    """A sample's image, decoded by the safe loader; CollectionError naming the file when it cannot be used."""
    try:
        return load_image(sample.path, name=f"{sample.path.parent.parent.name}/{sample.relative}").image
    except ImageError as error:
        raise CollectionError(str(error)) from None
