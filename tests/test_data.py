import shutil
from pathlib import Path

import torch
import pytest

from core.data import (IDX_STEMS, DatasetUnavailable, dataset_spec, ensure_dataset, is_available, load_dataset,
                       read_idx)


def test_digits_split_matches_the_recipe():
    data = load_dataset("digits")
    assert data.train_images.shape == (1347, 8, 8) and data.test_images.shape == (450, 8, 8)
    assert data.train_images.dtype == torch.uint8 and int(data.train_images.max()) == 16
    assert data.train_labels.dtype == torch.int64 and set(data.test_labels.tolist()) == set(range(10))
    assert data.pixel_scale == 1.0 and (data.mean, data.std) == (0.0, 1.0)


def test_the_digits_are_the_images_and_split_scikit_learn_gives():
    """core.data reads scikit-learn's file itself (its import costs a second): the same images, in the same split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    expected = train_test_split(bunch.images.astype("uint8"), bunch.target, random_state=0)  # the recipe's split
    data = load_dataset("digits")
    for ours, theirs in zip((data.train_images, data.test_images, data.train_labels, data.test_labels), expected):
        assert torch.equal(ours, torch.from_numpy(theirs).to(ours.dtype))


def test_datasets_are_loaded_once_per_process():
    assert load_dataset("digits") is load_dataset("digits")


MNIST_TRAIN_COUNTS = {14262: [1429, 1601, 1393, 1477, 1396, 1256, 1415, 1511, 1360, 1424],  # ../shared/data's subset
                      60000: [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]}  # MNIST as downloaded


def test_mnist_subset_loads_from_the_data_dir(mnist_dir):
    data = load_dataset("mnist", mnist_dir)
    assert data.train_images.shape[1:] == (28, 28) and data.test_images.shape == (10000, 28, 28)
    assert data.pixel_scale == 255.0 and data.mean == pytest.approx(0.1307)
    counts = torch.bincount(data.train_labels).tolist()
    assert counts == MNIST_TRAIN_COUNTS[len(data.train_labels)]


def test_mnist_root_comes_from_the_environment(mnist_dir, monkeypatch):
    monkeypatch.setenv("DIGIT_STUDIO_DATA", str(mnist_dir))
    assert is_available("mnist")


def test_missing_mnist_offline_is_one_clear_sentence(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError("no network")
    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DatasetUnavailable) as caught:
        ensure_dataset("mnist", tmp_path)
    message = str(caught.value)
    assert "not on this machine" in message and "digits dataset works now" in message and "\n" not in message


def test_truncated_idx_file_is_refused(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\0" * 100)
    with pytest.raises(DatasetUnavailable, match="truncated"):
        read_idx(path)


def test_fashion_mnist_from_the_debian_package():
    if not is_available("fashion-mnist"):
        pytest.skip("dataset-fashion-mnist is not installed")
    data = load_dataset("fashion-mnist")
    assert data.train_images.shape == (60000, 28, 28) and data.class_names[0] == "T-shirt/top"


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ValueError, match="digits, mnist, fashion-mnist"):
        dataset_spec("cifar")


def mirrors_offline(url, download_root, filename, md5=None):
    from urllib.error import URLError

    raise URLError("no network")


def mirror_serving(folder: Path):
    """A stand-in for torchvision's download that 'fetches' each file from `folder` (as if extracted)."""
    def fetch(url, download_root, filename, md5=None):
        extracted = filename.removesuffix(".gz")
        shutil.copyfile(folder / extracted, Path(download_root) / extracted)
    return fetch


def test_a_failed_download_creates_nothing_in_the_data_folder(tmp_path, monkeypatch):
    import torchvision.datasets.mnist

    system_folder = tmp_path / "usr-share"  # stands for --data-dir /usr/share: it exists and must stay as it is
    system_folder.mkdir()
    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", mirrors_offline)
    with pytest.raises(DatasetUnavailable, match="not on this machine"):
        ensure_dataset("mnist", system_folder)
    with pytest.raises(DatasetUnavailable, match="not on this machine"):
        ensure_dataset("mnist", tmp_path / "new-data")
    assert list(system_folder.iterdir()) == [] and not (tmp_path / "new-data").exists()


def test_a_download_lands_in_the_data_folder_and_loads(tmp_path, monkeypatch, mnist_dir):
    import torchvision.datasets.mnist

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive",
                        mirror_serving(mnist_dir / "MNIST" / "raw"))
    data = ensure_dataset("mnist", tmp_path / "data")
    assert sorted(p.name for p in (tmp_path / "data" / "MNIST" / "raw").iterdir()) == sorted(IDX_STEMS)
    assert len(data.test_labels) == 10000 and is_available("mnist", tmp_path / "data")
