"""Digit collections: saving, listing and deleting samples in ImageFolder folders, and loading one as data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.collection import (CollectionError, collection_dir, collection_samples, collections_root, delete_sample,
                             list_collections, save_sample, scan_folder)
from core.folder_data import FOLDER_DATASET, HELD_OUT_SHARE, held_out_mask, load_image_folder, trained_folder
from core.images import load_image
from core.inference import load_default_model, predict_image
from core.preprocess import preprocess
from tests.drawn_digits import drawn, encoded, on_transparent, png_declaring


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_collections_live_under_the_data_folder(tmp_path):
    assert collections_root(tmp_path) == tmp_path / "collections"
    assert collections_root() == Path(os.environ["DIGIT_STUDIO_DATA"]) / "collections"


def test_save_sample_writes_the_original_canvas_as_a_png_in_its_class_folder(tmp_path):
    canvas = np.asarray(on_transparent(7))  # what the drawing canvas returns: RGBA, transparent background
    sample = save_sample(tmp_path, "mine", canvas, 7)
    assert sample.path.parent == tmp_path / "mine" / "7" and sample.path.suffix == ".png" and sample.label == 7
    with Image.open(sample.path) as saved:
        assert saved.format == "PNG" and saved.mode == "RGBA"
        assert np.array_equal(np.asarray(saved), canvas)  # the original pixels, not the 28x28 the model saw
    assert np.array_equal(preprocess(load_image(sample.path).image).pixels, preprocess(canvas).pixels)
    assert [p.name for p in (tmp_path / "mine" / "7").iterdir()] == [sample.file_name]  # no temp file left


def test_each_save_gets_a_new_file_name(tmp_path):
    paths = {save_sample(tmp_path, "mine", drawn(3), 3).path for _ in range(5)}
    assert len(paths) == 5 and all(path.is_file() for path in paths)


def test_save_sample_accepts_an_uploads_bytes_and_a_pil_image(tmp_path):
    jpeg = save_sample(tmp_path, "mine", encoded(drawn(5).convert("RGB"), "JPEG"), 5)
    pil = save_sample(tmp_path, "mine", drawn(2), 2)
    assert Image.open(jpeg.path).format == "PNG" and Image.open(pil.path).size == (280, 280)


@pytest.mark.parametrize("label", [10, -1, True, "3", 3.0, None, 2**70])
def test_a_label_outside_the_classes_is_refused_and_nothing_is_written(tmp_path, label):
    with pytest.raises(CollectionError, match="not one of the classes 0 to 9"):
        save_sample(tmp_path, "mine", drawn(3), label)
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("name", ["../up", "a/b", "a\\b", ".hidden", "..", ".", "", "a.b", "x" * 65, "-dash",
                                  "with space", "tab\t", "nul\0", None, 3, "/abs"])
def test_a_collection_name_that_is_not_plain_and_short_is_refused(tmp_path, name):
    with pytest.raises(CollectionError, match="is not a collection name"):
        save_sample(tmp_path / "collections", name, drawn(3), 3)
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("size", [(4, 4), (5001, 5001)])
def test_images_the_safe_loader_would_not_read_back_are_refused(tmp_path, size):
    with pytest.raises(CollectionError, match="cannot be kept"):
        save_sample(tmp_path, "mine", Image.new("L", size), 1)
    assert files_under(tmp_path) == []


def test_an_array_that_is_no_image_is_refused(tmp_path):
    with pytest.raises(CollectionError, match="cannot be saved"):
        save_sample(tmp_path, "mine", np.zeros((28, 28, 7), dtype=np.uint8), 1)


def test_saving_never_writes_through_a_link_leading_out_of_the_collections(tmp_path):
    root, outside = tmp_path / "collections", tmp_path / "outside"
    (root / "mine").mkdir(parents=True)
    outside.mkdir()
    (root / "mine" / "4").symlink_to(outside)
    (root / "away").symlink_to(outside)
    for name in ("mine", "away"):
        with pytest.raises(CollectionError, match="outside"):
            save_sample(root, name, drawn(4), 4)
    assert list(outside.iterdir()) == []


def test_list_collections_counts_each_class_and_lists_a_bad_folder_with_its_reason(tmp_path):
    for label in (1, 1, 1, 7):
        save_sample(tmp_path, "mine", drawn(label), label)
    save_sample(tmp_path, "theirs", drawn(0), 0)
    (tmp_path / "broken" / "cats").mkdir(parents=True)
    (tmp_path / "not a name").mkdir()
    (tmp_path / "notes.txt").write_text("not a collection")
    listed = {info.name: info for info in list_collections(tmp_path)}
    assert set(listed) == {"broken", "mine", "theirs"}
    assert listed["mine"].counts == {1: 3, 7: 1} and listed["mine"].size == 4 and listed["mine"].problem is None
    assert listed["theirs"].counts == {0: 1}
    assert "'cats'" in listed["broken"].problem and "named 0 to 9" in listed["broken"].problem
    assert list_collections(tmp_path / "nowhere") == []


def test_list_collections_reads_the_data_folders_collections_by_default(tmp_path):
    save_sample(collections_root(), "mine", drawn(6), 6)
    assert [info.name for info in list_collections()] == ["mine"]


def test_links_leading_out_and_files_that_are_no_images_are_never_read(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(encoded(drawn(8), "PNG"))
    root = tmp_path / "collections"
    kept = save_sample(root, "mine", drawn(8), 8)
    (root / "mine" / "8" / "leak.png").symlink_to(outside / "secret.png")
    (root / "mine" / "8" / "notes.txt").write_text("hello")
    (root / "mine" / "8" / ".DS_Store").write_bytes(b"\0\0")
    (root / "mine" / "9").symlink_to(outside)  # a whole class folder leading out
    (root / "elsewhere").symlink_to(outside)
    scan = scan_folder(root / "mine")
    assert [sample.path for sample in scan.samples] == [kept.path]
    assert set(scan.skipped) == {"8/leak.png", "8/notes.txt", "8/.DS_Store", "9"}
    assert "4 files skipped in mine" in scan.notice and "links leading out" in scan.notice
    listed = {info.name: info for info in list_collections(root)}
    assert listed["mine"].counts == {8: 1} and listed["mine"].skipped == 4
    assert "outside" in listed["elsewhere"].problem and listed["elsewhere"].counts == {}


def test_collection_samples_lists_the_images_class_by_class(tmp_path):
    saved = [save_sample(tmp_path, "mine", drawn(label), label) for label in (5, 2, 5)]
    listed = collection_samples(tmp_path, "mine")
    assert [sample.label for sample in listed] == [2, 5, 5] and {s.path for s in listed} == {s.path for s in saved}
    assert collection_samples(tmp_path, "empty") == []


def test_delete_sample_removes_one_image_and_a_class_folder_it_empties(tmp_path):
    first, second = (save_sample(tmp_path, "mine", drawn(3), 3) for _ in range(2))
    delete_sample(tmp_path, "mine", 3, first.file_name)
    assert not first.path.exists() and second.path.is_file()
    delete_sample(tmp_path, "mine", 3, second.file_name)
    assert not (tmp_path / "mine" / "3").exists() and (tmp_path / "mine").is_dir()
    with pytest.raises(CollectionError, match="no longer there"):
        delete_sample(tmp_path, "mine", 3, second.file_name)


@pytest.mark.parametrize("file_name", ["../../victim.png", "../7/x.png", ".hidden.png", "", "a/b.png", None])
def test_delete_sample_refuses_names_that_could_reach_another_file(tmp_path, file_name):
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"keep me")
    save_sample(tmp_path / "c", "mine", drawn(3), 3)
    with pytest.raises(CollectionError):
        delete_sample(tmp_path / "c", "mine", 3, file_name)
    assert victim.read_bytes() == b"keep me" and len(collection_samples(tmp_path / "c", "mine")) == 1


def test_deleting_a_link_removes_the_link_never_its_target(tmp_path):
    target = tmp_path / "target.png"
    target.write_bytes(encoded(drawn(1), "PNG"))
    save_sample(tmp_path / "c", "mine", drawn(1), 1)
    (tmp_path / "c" / "mine" / "1" / "link.png").symlink_to(target)
    delete_sample(tmp_path / "c", "mine", 1, "link.png")
    assert target.is_file() and not (tmp_path / "c" / "mine" / "1" / "link.png").is_symlink()


def test_collection_dir_refuses_a_collection_that_is_a_link_out(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "away").symlink_to(tmp_path)
    with pytest.raises(CollectionError, match="outside"):
        collection_dir(tmp_path / "root", "away")
    assert collection_dir(tmp_path / "root", "fresh") == tmp_path / "root" / "fresh"


# ---- a folder as data -------------------------------------------------------------------------------------------

def drawn_folder(folder: Path, per_class: dict[int, int]) -> Path:
    """A folder of digits drawn as on the canvas, in varied widths and places, `per_class[d]` of digit d."""
    for digit, count in per_class.items():
        (folder / str(digit)).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            box = (20 + 6 * index, 30, 200 + 6 * index, 250)
            drawn(digit, width=10 + 2 * index, box=box).save(folder / str(digit) / f"{index:03d}.png")
    return folder


def test_images_go_through_exactly_the_preprocessing_predict_uses(tmp_path):
    canvas = np.asarray(on_transparent(4))
    save_sample(tmp_path, "mine", canvas, 4)
    drawn_folder(tmp_path / "mine", {2: 3, 7: 2})
    data = load_image_folder(tmp_path / "mine")
    run = load_default_model()
    for pixels, label, file in zip(data.pixels, data.labels, data.files):
        image = load_image(tmp_path / "mine" / file).image
        assert np.array_equal(pixels, predict_image(run, image).preprocessed.pixels), file
        assert file.startswith(f"{label}/")
    assert data.pixels.shape == (6, 28, 28) and data.pixels.dtype == np.uint8
    four = data.pixels[list(data.labels).index(4)]
    assert np.array_equal(four, predict_image(run, canvas).preprocessed.pixels)  # as Predict saw the drawing


def test_the_held_out_part_is_a_seeded_share_of_each_class_with_at_least_one(tmp_path):
    data = load_image_folder(drawn_folder(tmp_path / "d", {0: 15, 1: 10, 2: 2, 3: 1}), seed=4)
    held = {label: int(data.held_out[data.labels == label].sum()) for label in range(4)}
    assert HELD_OUT_SHARE == 0.2 and held == {0: 3, 1: 2, 2: 1, 3: 0}
    assert data.held_out_size == 6 and data.train_size == 22 and data.held_out_share == 0.2
    again = load_image_folder(tmp_path / "d", seed=4)
    assert np.array_equal(again.held_out, data.held_out)
    others = [load_image_folder(tmp_path / "d", seed=seed).held_out for seed in (5, 6)]
    assert any(not np.array_equal(other, data.held_out) for other in others)
    assert load_image_folder(tmp_path / "d", held_out_share=0.5).held_out_size == 8 + 5 + 1


def test_images_trained_on_do_not_become_held_out_when_the_collection_grows():
    files = tuple(f"3/{index:03d}.png" for index in range(10))
    before = held_out_mask(np.full(10, 3), files, 0.2, 0)
    after = held_out_mask(np.full(12, 3), files + ("3/new-a.png", "3/new-b.png"), 0.2, 0)
    assert before.sum() == after.sum() == 2  # round(0.2 x 10) = round(0.2 x 12)
    assert set(np.flatnonzero(after)) <= set(np.flatnonzero(before)) | {10, 11}  # no image trained on is now tested


def test_as_dataset_trains_on_the_rest_and_tests_on_the_held_out_part(tmp_path):
    data = load_image_folder(drawn_folder(tmp_path / "d", {5: 5, 6: 5}))
    dataset = data.as_dataset()
    assert dataset.name == FOLDER_DATASET and dataset.class_names == tuple("0123456789")
    assert tuple(dataset.train_images.shape) == (8, 28, 28) and tuple(dataset.test_images.shape) == (2, 28, 28)
    assert sorted(dataset.test_labels.tolist()) == [5, 6] and dataset.input_format.size == 28
    assert np.array_equal(dataset.test_images.numpy(), data.pixels[data.held_out])


def test_files_are_found_as_torchvisions_image_folder_finds_them(tmp_path):
    from torchvision.datasets import DatasetFolder

    from core.collection import IMAGE_SUFFIXES

    folder = drawn_folder(tmp_path / "d", {0: 2, 3: 3, 9: 1})
    (folder / "3" / "x.JPG").write_bytes(encoded(drawn(3).convert("RGB"), "JPEG"))
    reference = DatasetFolder(str(folder), loader=load_image, extensions=IMAGE_SUFFIXES)  # ImageFolder's rules
    ours = scan_folder(folder)
    assert [(str(s.path), s.label) for s in ours.samples] == \
        [(path, int(reference.classes[index])) for path, index in reference.samples]


@pytest.mark.parametrize("build, words", [
    (lambda d: None, "is not a folder of digit images"),
    (lambda d: ((d / "3").mkdir(parents=True), (d / "3" / "a.png").write_bytes(b""), (d / "3" / "b.png").write_bytes(b"x")),
     "too few readable images to hold any out"),  # every image left out
    (lambda d: d.mkdir(), "has no class folders"),
    (lambda d: (d / "a" / "b.png").parent.mkdir(parents=True), "folder named 'a': class folders must be named 0 to 9"),
    (lambda d: (d / "10").mkdir(parents=True), "folder named '10'"),
    (lambda d: (d / "3").mkdir(parents=True), "has empty class folders (3)"),
    (lambda d: ((d / "3").mkdir(parents=True), (d / "3" / "a.txt").write_text("x")), "has empty class folders (3)"),
    (lambda d: drawn_folder(d, {1: 1, 2: 1}), "too few readable images to hold any out"),
])
def test_a_folder_that_cannot_be_trained_on_gets_one_sentence(tmp_path, build, words):
    build(tmp_path / "bad")
    with pytest.raises(CollectionError) as refused:
        load_image_folder(tmp_path / "bad")
    message = str(refused.value)
    assert words in message and "\n" not in message and message.endswith(".")


@pytest.mark.parametrize("file_name, content, words", [
    ("bomb.png", png_declaring(30_000, 30_000), "d/3/bomb.png declares an enormous size"),
    ("notes.png", b"my notes, not a picture", "d/3/notes.png is not an image this app can read"),
    ("half.png", encoded(drawn(3), "PNG")[:900], "d/3/half.png is damaged or truncated"),
    ("huge.png", b"\x89PNG" + b"\0" * (9 * 1024 * 1024), "d/3/huge.png is larger than 8 MB"),
], ids=["bomb", "not-an-image", "truncated", "over-8-MB"])
def test_an_image_that_cannot_be_decoded_is_left_out_and_named_with_its_reason(tmp_path, file_name, content, words):
    folder = drawn_folder(tmp_path / "d", {3: 3})
    (folder / "3" / file_name).write_bytes(content)
    data = load_image_folder(folder)  # one bad file never stops the folder's training
    assert data.size == 3 and file_name not in " ".join(data.files)
    assert data.notices[-1].startswith(f"1 image left out: {words}") and "\n" not in data.notices[-1]


def test_files_that_are_no_images_and_images_without_a_digit_are_left_out_and_said(tmp_path):
    folder = drawn_folder(tmp_path / "d", {8: 4})
    (folder / "8" / "readme.txt").write_text("not an image")
    Image.new("L", (200, 200), 255).save(folder / "8" / "white.png")
    data = load_image_folder(folder)
    assert data.size == 4 and "white.png" not in " ".join(data.files)
    assert data.notices == ("1 file skipped in d (not .png/.jpg/.jpeg/.bmp/.gif/.webp images, hidden, or links "
                            "leading out of the folder): 8/readme.txt.",
                            "1 image left out: no digit could be read in 8/white.png.")


def test_a_runs_image_folder_is_read_back_only_from_the_apps_collections(tmp_path):
    data_dir = tmp_path / "data"
    mine = drawn_folder(collections_root(data_dir) / "mine", {3: 3, 5: 3})
    elsewhere = drawn_folder(tmp_path / "private" / "scans", {3: 3, 5: 3})
    (collections_root(data_dir) / "linked").symlink_to(elsewhere, target_is_directory=True)

    def meta(folder, **settings):
        return {"dataset": FOLDER_DATASET, "settings": {"image_folder": str(folder), "seed": 4, **settings}}
    read = trained_folder(meta(mine, held_out_share=0.5), data_dir)
    assert read.files == load_image_folder(mine).files and read.seed == 4 and read.held_out_share == 0.5
    for folder in (elsewhere, collections_root(data_dir) / "linked", collections_root(data_dir) / ".." / ".."):
        with pytest.raises(CollectionError, match="outside this app's collections folder"):
            trained_folder(meta(folder), data_dir)
    for settings, words in (({"held_out_share": "abc"}, "held-out share 'abc'"), ({"seed": [1]}, "seed '\\[1\\]'"),
                            ({"image_folder": None}, "does not say which")):
        with pytest.raises(CollectionError, match=words):
            trained_folder(meta(mine, **settings), data_dir)


def test_a_sample_the_disk_refuses_leaves_no_empty_class_folder(tmp_path, monkeypatch):
    import core.collection as collection

    def full_disk(path, data):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(collection, "write_new_file", full_disk)
    with pytest.raises(OSError):
        collection.save_sample(tmp_path, "mine", drawn(4), 4)
    assert not (collection_dir(tmp_path, "mine") / "4").exists()  # it made the collection untrainable
