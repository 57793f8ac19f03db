"""The Explore page in Streamlit's AppTest, on digits and on the MNIST subset: every section, with and without a model,
and the faults (damaged data, a model that vanished) that must give a sentence, never a traceback."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.data import default_data_dir, load_dataset, missing_message
from core.evaluation import predict_split
from core.record import RecordedTraining
from core.store import RunStore, default_runs_dir
from core.training import TrainConfig
from ui.charts import MARK_COLOR, TILE_PAD, grid_cell_size, map_image, tile_scale
from ui.explore import selected_sample_ids, tsne_jobs

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "explore.py")
QUICK = TrainConfig(model="digits-cnn", dataset="digits", epochs=3, batch_size=100, optimizer="sgd",
                    learning_rate=0.5, loss="bce-one-hot")


def page() -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=180)
    app.run()
    assert not app.exception, app.exception[0].value
    return app


def rerun(app: AppTest) -> AppTest:
    app.run()
    assert not app.exception, app.exception[0].value
    assert not app.error, app.error[0].value
    return app


def shown(markdown: str) -> str:
    """Markdown as the characters it renders to, for text escaped with ui.text.escape_markdown."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)


def rendered(app: AppTest) -> list[str]:
    """The Markdown source of every text element on the page."""
    return [e.value for kind in (app.markdown, app.caption, app.info, app.success, app.warning, app.error)
            for e in kind]


def texts(app: AppTest) -> str:
    return shown("\n".join(rendered(app)))


def view_size(app: AppTest) -> int:
    """How many samples the grid's view holds, read from its caption."""
    match = re.search(r"of ([\d,]+) in this view", texts(app))
    assert match, texts(app)
    return int(match.group(1).replace(",", ""))


def charts(app: AppTest) -> list:
    return list(app.get("plotly_chart"))


def grid(app: AppTest) -> dict:
    """What the sample grid (ui.tile_grid, a components.v2 component) was given: its mosaic PNG, tiles and hovers."""
    (component,) = [element for element in app.get("bidi_component")
                    if element.proto.component_name == "digit_studio_tile_grid"]
    return json.loads(component.proto.json)


def metric(app: AppTest, label: str) -> str:
    return next(m.value for m in app.metric if m.label == label)


def open_tab(app: AppTest, name: str) -> AppTest:
    """Open one of the page's tabs, as a click on it does: only the open tab is drawn (and Samples always)."""
    app.session_state["explore_tab"] = name
    return rerun(app)


@pytest.fixture(scope="module")
def trained_digits_run(tmp_path_factory) -> Path:
    recorded = RecordedTraining(QUICK, RunStore(tmp_path_factory.mktemp("trained")))
    assert list(recorded.events())[-1].status == "done"
    return recorded.run_dir


@pytest.fixture
def digits_run(trained_digits_run) -> str:
    """A finished digits run in this test's own runs folder (trained once per module, copied)."""
    target = default_runs_dir() / trained_digits_run.name
    shutil.copytree(trained_digits_run, target)
    return str(target)


@pytest.fixture
def with_mnist(mnist_dir, monkeypatch) -> Path:
    monkeypatch.setenv("DIGIT_STUDIO_DATA", str(mnist_dir))
    return mnist_dir


# ---- digits, no model ---------------------------------------------------------------------------------------------

def test_digits_opens_with_every_section_and_explains_the_missing_mnist(tmp_path):
    app = page()
    assert app.selectbox(key="explore_dataset").value == "digits"
    assert "mnist" not in app.selectbox(key="explore_dataset").options
    assert missing_message("mnist", tmp_path / "data") in texts(app)  # conftest points DIGIT_STUDIO_DATA there
    data = load_dataset("digits")
    assert view_size(app) == len(data.train_labels) == 1347
    assert "Sample #0: " + data.class_names[int(data.train_labels[0])] in texts(app)
    assert len(app.tabs) == 5 and len(charts(app)) == 1  # a first visit draws the sample's pixels, nothing hidden,
    assert grid(app)["ids"] == list(range(100))  # and the grid, drawn by the browser without plotly
    assert app.toggle(key="explore_only_wrong").disabled  # needs a model
    open_tab(app, "Statistics")
    for heading in ("Samples per class", "Mean image of each class", "Pixel intensities"):
        assert heading in texts(app)
    open_tab(app, "Embedding")
    assert "principal components explain" in texts(app)  # the PCA map is drawn at once
    open_tab(app, "Model")
    assert "Pick a model at the top of the page" in texts(app)
    open_tab(app, "Augmentation")
    assert len(app.get("image")) == 1 and "Sample #0:" in texts(app)


def test_pixel_statistics_shown_are_the_datasets(tmp_path):
    app = open_tab(page(), "Statistics")
    images = load_dataset("digits").train_images.numpy()
    assert metric(app, "Background (value 0)") == f"{(images == 0).mean() * 100:.1f} %"
    assert metric(app, "Mean pixel value") == f"{images.mean():.1f} of 16"
    app.button_group(key="explore_split").set_value("test")
    rerun(app)
    assert view_size(app) == 450 and "Pixel intensities** (test, 450 images)" in texts(app)


def test_class_filter_order_and_pages():
    app = page()
    labels = load_dataset("digits").train_labels.numpy()
    app.button_group(key="explore_classes").set_value([3, 7])
    rerun(app)
    assert view_size(app) == int(np.isin(labels, [3, 7]).sum())
    first = int(np.flatnonzero(np.isin(labels, [3, 7]))[0])
    assert f"Sample #{first}: 3" in texts(app) or f"Sample #{first}: 7" in texts(app)  # the view's first opens
    app.button_group(key="explore_classes").set_value([])
    app.selectbox(key="explore_per_page").set_value(100)
    app.number_input(key="explore_page").set_value(3)
    rerun(app)
    assert "Samples 201-300 of 1,347" in texts(app)
    app.number_input(key="explore_page").set_value(14)
    rerun(app)
    assert "Samples 1,301-1,347 of 1,347" in texts(app)


def test_shuffling_by_seed_changes_the_first_sample_reproducibly():
    app = page()
    assert app.number_input(key="explore_seed").disabled  # only shuffling uses a seed
    app.button_group(key="explore_order").set_value("shuffled")
    rerun(app)
    app.number_input(key="explore_seed").set_value(5)
    rerun(app)
    expected = int(np.random.default_rng(5).permutation(1347)[0])
    assert f"Sample #{expected}:" in texts(app)


def test_typing_an_index_opens_that_sample_large_with_its_pixels():
    app = page()
    app.number_input(key="explore_index").set_value(42)
    rerun(app)
    data = load_dataset("digits")
    assert f"Sample #42: {data.class_names[int(data.train_labels[42])]}" in texts(app)
    pixels = next(c for c in charts(app) if '"texttemplate"' in c.proto.spec and '"heatmap"' in c.proto.spec)
    assert str(int(data.train_images[42].max())) in pixels.proto.spec  # 8x8: each value written in its cell
    assert "point at a pixel" not in texts(app)
    rerun(app)
    assert app.number_input(key="explore_index").value == 42  # stays open on the next run
    open_tab(app, "Augmentation")
    assert app.number_input(key="explore_aug_index_42").value == 42  # the augmentation preview follows it
    open_tab(app, "Samples")
    assert app.number_input(key="explore_index").value == 42  # and another tab did not forget it
    app.button_group(key="explore_classes").set_value([5])
    rerun(app)
    first_five = int(np.flatnonzero(data.train_labels.numpy() == 5)[0])
    assert app.number_input(key="explore_index").value == first_five  # a new view opens its first sample


def test_the_statistics_maps_are_square_pictures_in_grey_or_along_a_colour_scale():
    import plotly.colors

    values = np.array([[0.0, 5.0], [10.0, 20.0]])  # 20: above the top, drawn as the top
    grey = np.asarray(map_image(values, 10.0))
    assert grey.shape == (10, 10, 3) and [int(grey[y, x, 0]) for y, x in ((0, 0), (0, 5), (5, 0), (5, 5))] == \
        [0, 128, 255, 255]
    coloured = np.asarray(map_image(values, 10.0, plotly.colors.sequential.Viridis))
    assert tuple(coloured[0, 0]) == (0x44, 0x01, 0x54) and tuple(coloured[5, 5]) == (0xfd, 0xe7, 0x25)
    assert np.asarray(map_image(np.zeros((3, 3)), 0.0)).max() == 0  # a flat map (no spread at all): no division by 0


def test_grid_and_embedding_selections_read_the_sample_ids():
    points = [{"curve_number": 1, "point_index": 3, "customdata": [17]}, {"customdata": [4]}, {"customdata": [17]},
              {"x": 1, "y": 2}, {"customdata": "odd"}, {"customdata": {"0": 9}}, {"customdata": [True]}]
    assert selected_sample_ids(points) == [4, 9, 17]
    assert selected_sample_ids([]) == []


def test_augmentation_preview_draws_again_and_follows_the_sample():
    app = open_tab(page(), "Augmentation")
    assert not [element.value for element in app.markdown if element.value == "`None`"]  # no stray value written
    before = app.get("image")[-1].value[0]
    app.button(key="explore_aug_redraw").click()
    rerun(app)
    assert app.session_state["explore_aug_seed"] == 1
    assert app.get("image")[-1].value[0] != before
    app.slider(key="explore_aug_rotation").set_value(40)
    rerun(app)
    assert "Sample #0:" in texts(app)
    open_tab(app, "Statistics")
    open_tab(app, "Augmentation")
    assert app.slider(key="explore_aug_rotation").value == 40  # kept while its tab was closed


def test_tsne_runs_in_the_background_with_progress_and_then_shows_the_map():
    app = open_tab(page(), "Embedding")
    app.button_group(key="explore_embed_method").set_value("t-SNE")
    rerun(app)
    assert "t-SNE places similar images near each other" in texts(app)
    app.button_group(key="explore_split").set_value("test")  # 450 samples: quick
    rerun(app)
    app.button(key="explore_tsne_start").click()
    rerun(app)
    job = next(job for key, job in tsne_jobs().jobs.items() if key[0] == "digits" and key[2] == "test")
    assert app.get("progress") or job.done.is_set()
    assert job.done.wait(240) and job.error is None
    rerun(app)
    assert not app.get("progress")
    assert not any("t-SNE places" in text for text in texts(app).splitlines())
    assert any('"scattergl"' in c.proto.spec for c in charts(app))


# ---- with a model -------------------------------------------------------------------------------------------------

def train_predictions(run_path: str) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, true) classes of the digits train split, asked of the run directly, not through the page."""
    data = load_dataset("digits")
    probabilities = predict_split(RunStore(default_runs_dir()).load(Path(run_path).name), data, "train")
    return probabilities.argmax(1), data.train_labels.numpy()


def grid_marks(app: AppTest, count: int, side: int = 8) -> list[bool]:
    """Which tiles of the sample grid (of `side` px images) have a red border, read from its mosaic's pixels."""
    png = base64.b64decode(grid(app)["src"].split(",", 1)[1])
    mosaic = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    cell_w, cell_h = grid_cell_size((side, side), tile_scale(side))
    corners = [mosaic[(i // 10) * cell_h + TILE_PAD // 2, (i % 10) * cell_w + TILE_PAD // 2] for i in range(count)]
    return [tuple(int(v) for v in corner) == MARK_COLOR for corner in corners]


def test_a_digits_model_marks_mistakes_and_shows_its_confusion(digits_run):
    predictions, labels = train_predictions(digits_run)
    wrong = predictions != labels
    assert 0 < wrong.sum() < 200  # the fixture's model must make some mistakes for this test to mean anything
    app = page()
    model_box = app.selectbox(key="explore_model_digits")
    assert len(model_box.options) == 2 and Path(digits_run).name not in model_box.options[1]  # named, not an id
    assert re.fullmatch(r"Digits CNN \(recipe\) · digits · 3 epochs · \d+ \w{3} \d\d:\d\d: \d+\.\d\d % test accuracy",
                        model_box.options[1]), model_box.options[1]
    model_box.set_value(digits_run)
    rerun(app)
    open_tab(app, "Model")
    assert metric(app, "Accuracy on train") == f"{(~wrong).mean() * 100:.2f} %"
    assert metric(app, "Misclassified") == f"{wrong.sum():,} of 1,347"
    assert "Red: the model is wrong." in texts(app)
    assert re.search(r"Sample #0: \d, predicted \d \(\d+ %, (right|wrong)\)", texts(app)), texts(app)
    assert grid_marks(app, 100)[1:] == list(wrong[1:100])  # the first tile is the one shown large: blue
    confusion = np.zeros((10, 10), dtype=int)
    np.add.at(confusion, (labels, predictions), 1)
    np.fill_diagonal(confusion, 0)
    true_class, predicted_class = np.unravel_index(confusion.argmax(), confusion.shape)
    assert (f"The most frequent mistake: {true_class} predicted as {predicted_class}**, "
            f"{confusion.max():,} samples") in texts(app)
    accuracy = [(predictions[labels == c] == c).mean() for c in range(10)]
    assert metric(app, "Hardest class") == f"{int(np.argmin(accuracy))} ({min(accuracy) * 100:.1f} %)"
    app.toggle(key="explore_only_wrong").set_value(True)
    rerun(app)
    assert view_size(app) == wrong.sum() and all(grid_marks(app, min(100, wrong.sum()))[1:])


def test_colouring_the_map_by_correctness(digits_run):
    predictions, labels = train_predictions(digits_run)
    app = page()
    app.selectbox(key="explore_model_digits").set_value(digits_run)
    rerun(app)
    open_tab(app, "Embedding")
    app.button_group(key="explore_embed_color").set_value("correctness")
    rerun(app)
    scatter = next(json.loads(c.proto.spec) for c in charts(app) if '"scattergl"' in c.proto.spec)
    groups = {trace["name"].split(" (")[0]: {row[0] for row in trace["customdata"]} for trace in scatter["data"]}
    assert list(groups) == ["right", "wrong"]  # every train sample is on the map (1,347 < the 2,000 offered)
    assert groups["wrong"] == set(np.flatnonzero(predictions != labels).tolist())
    assert groups["right"] == set(np.flatnonzero(predictions == labels).tolist())


def test_a_model_whose_weights_vanished_gives_a_sentence(digits_run):
    app = page()
    for weights in Path(digits_run).glob("*.safetensors"):
        weights.unlink()
    app.selectbox(key="explore_model_digits").set_value(digits_run)
    app.run()
    assert not app.exception
    assert any("This model cannot be used" in e.value and "missing" in e.value for e in app.error)
    assert "Pick a model" not in texts(app) and view_size(app) == 1347  # the data is still there to explore


def test_unfinished_and_damaged_runs_are_not_offered(digits_run):
    damaged = Path(digits_run).parent / "20000101-000000-broken"
    damaged.mkdir()
    (damaged / "meta.json").write_text("{not json")
    app = page()
    options = app.selectbox(key="explore_model_digits").options
    assert len(options) == 2 and options[1].startswith("Digits CNN (recipe) · digits · 3 epochs")


def test_text_from_folders_and_faults_is_shown_as_text(tmp_path, monkeypatch):
    import ui.explore

    folder = tmp_path / "**data** ![x](x.png) <img src=y.png>"
    monkeypatch.setenv("DIGIT_STUDIO_DATA", str(folder))  # named in the sentence on how to get MNIST
    fault = "<img src=z.png> ![w](w.png) [link](https://example.invalid) _it_"

    def broken(*args):
        raise ValueError(fault)

    monkeypatch.setattr(ui.explore, "both_class_counts", broken)
    app = page()
    app.session_state["explore_tab"] = "Statistics"
    app.run()
    assert missing_message("mnist", folder) in texts(app)
    assert f"The statistics could not be shown: ValueError: {fault}" in texts(app)
    for raw in (str(folder), fault, "![x](x.png)", "<img", "**data**", "_it_"):
        assert not [value for value in rendered(app) if re.search(r"(?<!\\)" + re.escape(raw), value)], raw


# ---- the MNIST subset ---------------------------------------------------------------------------------------------

def test_mnist_subset_with_the_shipped_model(with_mnist):
    app = page()
    app.selectbox(key="explore_dataset").set_value("mnist")
    rerun(app)
    train_size = len(load_dataset("mnist", with_mnist).train_labels)  # 14,262 in ../shared/data, 60,000 downloaded
    assert view_size(app) == train_size
    (pixels,) = [chart for chart in charts(app) if '"heatmap"' in chart.proto.spec]  # the sample, large
    assert '"texttemplate"' not in pixels.proto.spec and "row %{y}, column %{x}: %{z}" in pixels.proto.spec
    assert "28x28 pixels; point at a pixel for its value" in texts(app)  # 784 values written overlapped and hid it
    open_tab(app, "Statistics")
    assert f"Pixel intensities** (train, {train_size:,} images)" in texts(app)
    open_tab(app, "Model")
    from core.inference import DEFAULT_MODEL_DIR

    box = app.selectbox(key="explore_model_mnist")
    assert box.options[-1] == "Default model shipped with the app (Fast CNN)"
    app.button_group(key="explore_split").set_value("test")
    box.set_value(str(DEFAULT_MODEL_DIR))
    rerun(app)
    assert view_size(app) == 10_000
    accuracy = float(metric(app, "Accuracy on test").rstrip(" %")) / 100
    assert accuracy > 0.98
    app.button_group(key="explore_classes").set_value([9])
    app.toggle(key="explore_only_wrong").set_value(True)
    rerun(app)
    assert 0 < view_size(app) < 100 and all(hover.endswith("wrong)") for hover in grid(app)["hover"])  # each says so
    open_tab(app, "Augmentation")  # the copies' captions are the model's readings, the sample a 9 whatever they say
    assert re.search(r"what the model reads it as: \d+ of 16 right \(the sample is a 9\)", texts(app))


def counting(monkeypatch, module, name: str) -> list:
    """Replace module.name by a wrapper that records each call's arguments; returns the record."""
    calls, original = [], getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_mnist_filter_and_page_flips_reuse_the_loaded_data(with_mnist, monkeypatch):
    """Flipping pages or filtering redraws the grid alone: the dataset, its statistics and its map are not made again."""
    import ui.explore

    work = {name: counting(monkeypatch, ui.explore, name)
            for name in ("load_dataset", "pixel_statistics", "class_mean_images", "class_counts", "pca")}
    app = page()
    app.selectbox(key="explore_dataset").set_value("mnist")
    rerun(app)
    done_once = {name: len(calls) for name, calls in work.items()}
    labels = load_dataset("mnist", with_mnist).train_labels.numpy()
    timings = []
    for page_number in (2, 3, 4):
        app.number_input(key="explore_page").set_value(page_number)
        started = time.perf_counter()
        rerun(app)
        timings.append(time.perf_counter() - started)
        assert f"Samples {(page_number - 1) * 100 + 1:,}-{page_number * 100:,} of {len(labels):,}" in texts(app)
    app.button_group(key="explore_classes").set_value([3])
    rerun(app)
    assert view_size(app) == int((labels == 3).sum())
    assert f"Sample #{int(np.flatnonzero(labels == 3)[300])}: 3" in texts(app)  # page 4 of the threes opens its first
    assert {name: len(calls) for name, calls in work.items()} == done_once  # cached: nothing loaded or computed again
    print(f"MNIST page redraws (whole page, AppTest): {[round(t, 3) for t in timings]} s")


def test_damaged_mnist_files_give_a_sentence(tmp_path, mnist_dir, monkeypatch):
    raw = tmp_path / "broken" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for source in (mnist_dir / "MNIST" / "raw").iterdir():
        if not source.name.endswith(".gz") and "ubyte" in source.name:
            shutil.copy(source, raw / source.name)
    truncated = raw / "train-images-idx3-ubyte"
    truncated.write_bytes(truncated.read_bytes()[:5000])
    monkeypatch.setenv("DIGIT_STUDIO_DATA", str(tmp_path / "broken"))
    app = page()
    app.selectbox(key="explore_dataset").set_value("mnist")
    app.run()
    assert not app.exception
    assert any("could not be read" in e.value and "truncated" in e.value for e in app.error)


def test_the_tsne_wait_is_estimated_from_measured_maps_and_its_progress_says_time_so_far_and_left():
    from ui.explore import TsneJob, TsneJobs
    from ui.train_format import duration

    jobs = TsneJobs()
    assert duration(jobs.estimate(2000)) == "32 s"  # the benchmark's 2,000 samples in 31.7 s (the page said 20 s)
    assert 65 < jobs.estimate(3000) < 80
    job = TsneJob(size=400, fraction=0.25, message="iteration 125 of 500", started=time.monotonic() - 10)
    assert job.progress_words() == "iteration 125 of 500 · 10 s so far, about 30 s left"
    assert TsneJob(size=400).progress_words() == "starting"
    features = np.random.default_rng(0).random((60, 8)).astype(np.float32)
    done = jobs.start(("test", 60), features)
    assert done.done.wait(60) and done.error is None and done.seconds > 0
    assert jobs.estimate(60) == pytest.approx(done.seconds)  # the next estimate is this machine's own rate


def test_the_tsne_tab_says_its_wait_and_then_how_long_the_map_took():
    from ui.train_format import duration

    app = open_tab(page(), "Embedding")
    app.button_group(key="explore_embed_method").set_value("t-SNE")
    app.button_group(key="explore_split").set_value("test")
    rerun(app)
    assert f"For 450 samples it takes about {duration(tsne_jobs().estimate(450))} on this machine" in texts(app)
    app.button(key="explore_tsne_start").click()
    rerun(app)
    job = tsne_jobs().get(("digits", str(default_data_dir()), "test", 450, 0))  # this test's (the jobs are shared)
    assert job.done.wait(240) and job.error is None
    rerun(app)
    assert f"t-SNE map of 450 samples, computed in {duration(job.seconds)}." in texts(app)


def test_a_model_without_a_mistake_is_said_to_make_none_and_no_class_is_called_hardest(digits_run, monkeypatch):
    import ui.explore
    from ui.charts import per_class_accuracy_figure

    def perfect(run_path, stamp, dataset, root, split):  # a model that is right about every sample
        labels = load_dataset(dataset, root).train_labels.numpy() if split == "train" else \
            load_dataset(dataset, root).test_labels.numpy()
        return np.eye(10, dtype=np.float32)[labels]

    monkeypatch.setattr(ui.explore, "split_probabilities", perfect)
    app = page()
    app.selectbox(key="explore_model_digits").set_value(digits_run)
    open_tab(rerun(app), "Model")
    assert metric(app, "Misclassified") == "0 of 1,347" and metric(app, "Hardest class") == "none: all 100.0 %"
    assert "No mistakes at all on this split." in texts(app) and "most frequent mistake" not in texts(app)
    assert "#d62728" not in per_class_accuracy_figure(np.ones(10), [str(c) for c in range(10)]).data[0].marker.color
