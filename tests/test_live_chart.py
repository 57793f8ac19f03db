"""The Train page's live charts: the figures it sends each redraw, and the component folder served to the browser."""

from __future__ import annotations

import importlib.resources
import json
import math
import re
import stat
import tempfile

import pytest

from dataclasses import replace

from core.jobs import MAX_TRAIN_POINTS, EpochPoint, JobSnapshot, TrainPoint
from core.recipes import recipe
from core.record import RecordedTraining
from core.runlog import RunLogTail, followed
from core.store import RunStore
from ui import live_chart
from ui.train import MARKED_EPOCHS, accuracy_figure, loss_figure
from ui.train_charts import chart_reference, smoothing_note


def snapshot(train_losses: list[float], epochs: int) -> JobSnapshot:
    points = tuple(TrainPoint(index / 10, loss, 0.5) for index, loss in enumerate(train_losses))
    ends = tuple(EpochPoint(epoch, 0.2, 0.9, 0.25, 0.8 + epoch / 1000) for epoch in range(1, epochs + 1))
    return JobSnapshot(job_id=1, status="running", config=None, recipe=None, run_id=None, queue_position=0,
                       message="", progress=None, train_points=points, epoch_points=ends, submitted_at=0.0,
                       finished_at=None)


def test_the_figures_carry_every_point_and_a_diverged_loss_as_gaps():
    figure = loss_figure(snapshot([2.3, math.nan, math.inf, 0.123456789], epochs=3))
    train, test = figure["data"]
    assert train["y"] == [2.3, None, None, 0.1235] and train["x"] == [0.0, 0.1, 0.2, 0.3]  # 4 significant digits
    assert test["x"] == [1, 2, 3] and test["y"] == [0.25, 0.25, 0.25]
    json.dumps(figure, allow_nan=False)  # the browser's JSON.parse refuses NaN: the message must have none


def test_the_accuracy_chart_draws_the_reported_accuracy_as_a_line_and_drops_markers_on_long_runs():
    short = accuracy_figure(snapshot([1.0], epochs=MARKED_EPOCHS), reference=(0.9867, "reported"))
    assert short["layout"]["shapes"][0]["y0"] == 98.67  # the axis is in percent: "98.67 %"
    assert short["layout"]["annotations"][0]["text"] == "reported 98.67 %"
    assert short["data"][1]["mode"] == "lines+markers"
    long = accuracy_figure(snapshot([1.0], epochs=MARKED_EPOCHS + 1), reference=None)
    assert "shapes" not in long["layout"] and long["data"][1]["mode"] == "lines"


def test_the_line_is_the_figure_the_run_will_be_held_to_at_its_own_step_count():
    digits, net = recipe("digits-cnn"), recipe("net-10-20")

    def job(chosen, epochs: int, train_size: int, **changes) -> JobSnapshot:
        return replace(snapshot([1.0], epochs=1), recipe=chosen, config=chosen.settings(epochs=epochs, **changes),
                       train_size=train_size)

    assert chart_reference(job(digits, 1000, 1_347)) == (0.9867, "reported")  # as published
    subset = chart_reference(job(net, 10, 14_262))  # a quarter of the published steps: the figure measured here
    assert subset is not None and subset[1] == "measured" and subset == (net.measured_at(14_262, 10).mean, "measured")
    assert accuracy_figure(job(net, 10, 14_262), subset)["layout"]["annotations"][0]["text"].startswith("measured here")
    assert chart_reference(job(net, 3, 14_262)) is None  # nothing published or measured at 3 epochs of the subset
    assert chart_reference(job(digits, 1000, 1_347, learning_rate=0.1)) is None  # changed settings: not comparable
    assert chart_reference(job(digits, 1000, 0)) is None  # not started: its training images are not known yet


def test_a_run_followed_from_its_log_draws_the_figure_its_process_wrote(tmp_path):
    recorded = RecordedTraining(recipe("digits-cnn").settings(epochs=2, train_limit=320, progress_every=1),
                                RunStore(tmp_path), recipe=recipe("digits-cnn"))
    list(recorded.events())
    tail = RunLogTail(recorded.run_dir)
    tail.poll()
    assert tail.train_size == 320 and tail.started["reported_accuracy"] is None  # 2 epochs of 320: no figure
    assert chart_reference(followed(recorded.run_id, tail, alive=False, here="here")) is None
    tail.started = {**tail.started, "reported_accuracy": 0.9828, "reference_source": "measured"}
    assert chart_reference(followed(recorded.run_id, tail, alive=False, here="here")) == (0.9828, "measured")


def test_the_bundle_is_the_plotly_js_release_the_installed_plotly_package_is_built_for():
    # the figures are plotly JSON from the Python side: a plotly upgrade needs the bundle of its plotly.js
    shipped = (importlib.resources.files("plotly") / "package_data" / "plotly.min.js").read_bytes()[:200].decode()
    ours = live_chart.BUNDLE.read_bytes()[:200].decode()
    release = re.compile(r"plotly\.js \(basic - minified\) (v\d+\.\d+\.\d+)")
    assert release.search(ours) and f"plotly.js {release.search(ours).group(1)}\n" in shipped
    assert 'name:"scatter"' in live_chart.BUNDLE.read_text()  # the one trace type the charts draw


def test_the_component_folder_holds_the_page_and_plotly_js_and_is_built_once(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = live_chart.component_folder()
    assert folder.parent == tmp_path / "digit-studio"
    assert (folder / "index.html").read_bytes() == live_chart.PAGE.read_bytes()
    assert (folder / live_chart.BUNDLE.name).read_bytes() == live_chart.plotly_js()
    built = (folder / live_chart.BUNDLE.name).stat().st_mtime_ns
    assert live_chart.component_folder() == folder
    assert (folder / live_chart.BUNDLE.name).stat().st_mtime_ns == built
    assert not [path for path in folder.iterdir() if path.name.endswith(".tmp")]


def test_an_unwritable_cache_falls_back_to_a_private_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the fallback's folders go with the test's
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    folder = live_chart.component_folder()
    assert not folder.is_relative_to(blocked)
    assert (folder / "index.html").is_file() and (folder / live_chart.BUNDLE.name).is_file()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # served to the browser: nobody else may write there


def test_the_cache_root_follows_the_xdg_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert live_chart.cache_root() == tmp_path / "digit-studio"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert live_chart.cache_root().parts[-2:] == (".cache", "digit-studio")


def test_no_home_folder_falls_back_to_a_private_folder_too(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def no_home() -> None:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(live_chart, "cache_root", no_home)
    folder = live_chart.component_folder()
    assert (folder / "index.html").is_file() and stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_files_removed_while_the_app_runs_are_put_back_before_the_next_redraw(tmp_path, monkeypatch):
    folder, drawn = tmp_path / "served", []
    live_chart.write_component(folder, live_chart.PAGE.read_bytes())
    monkeypatch.setattr(live_chart, "_component", lambda: (lambda **args: drawn.append(args), folder))
    (folder / live_chart.BUNDLE.name).unlink()  # someone cleaned ~/.cache
    live_chart.live_charts({"data": []}, {"data": []}, height=320, key="charts")
    assert live_chart.complete(folder) and drawn[0]["height"] == 320


def test_thousands_of_epochs_are_thinned_to_the_curve_buffer_size_keeping_the_last():
    figure = loss_figure(snapshot([1.0], epochs=3 * MAX_TRAIN_POINTS + 7))
    test = figure["data"][1]
    assert len(test["x"]) <= MAX_TRAIN_POINTS + 1 and test["x"][0] == 1 and test["x"][-1] == 3 * MAX_TRAIN_POINTS + 7


def test_the_loss_chart_can_use_a_log_scale_and_each_scale_starts_a_fresh_zoom():
    linear, log = loss_figure(snapshot([0.5, 0.00004], epochs=2)), loss_figure(snapshot([0.5, 0.00004], 2), log=True)
    assert linear["layout"]["yaxis"]["type"] == "linear" and log["layout"]["yaxis"]["type"] == "log"
    assert log["data"][0]["y"][1] == 0.00004  # a tiny loss keeps its digits: above zero on a log axis
    assert linear["layout"]["uirevision"] != log["layout"]["uirevision"]
    assert linear["layout"]["dragmode"] == "zoom"  # drag to zoom; plotly's double-click resets


def accuracies(test: list[float], train: float = 0.995) -> JobSnapshot:
    points = tuple(TrainPoint(index / 10, 0.1, train) for index in range(40))
    ends = tuple(EpochPoint(epoch, 0.1, train, 0.1, value) for epoch, value in enumerate(test, start=1))
    return JobSnapshot(job_id=1, status="running", config=None, recipe=None, run_id=None, queue_position=0,
                       message="", progress=None, train_points=points, epoch_points=ends, submitted_at=0.0,
                       finished_at=None)


def test_the_accuracy_axis_follows_the_data_once_the_test_accuracy_is_above_90_percent():
    early = accuracy_figure(accuracies([0.3, 0.6, 0.85]), reference=None)["layout"]["yaxis"]
    assert "autorangeoptions" not in early and early["ticksuffix"] == " %"  # below 90 %: the whole climb
    late = accuracy_figure(accuracies([0.5, 0.91, 0.975, 0.981, 0.984, 0.983]), reference=None)["layout"]
    assert late["yaxis"]["autorange"] is True and late["yaxis"]["autorangeoptions"]["clipmin"] == 97
    assert late["title"]["text"] == "Accuracy (axis from 97 %)"


def test_train_and_test_and_every_compared_run_have_their_own_colour_from_a_colour_blind_safe_palette():
    from ui.train import RUN_COLORS, TEST_COLOR, TRAIN_COLOR, run_style

    train, test = loss_figure(snapshot([1.0], epochs=2))["data"]
    assert train["line"]["color"] == TRAIN_COLOR and test["line"]["color"] == TEST_COLOR
    assert RUN_COLORS[:2] == ("#0072B2", "#D55E00")  # Okabe-Ito's blue and vermilion, apart for every colour vision
    styles = [run_style(position) for position in range(2 * len(RUN_COLORS))]
    assert len(set(styles)) == len(styles)  # past the palette, the colours come back dashed


@pytest.mark.parametrize("smoothing", [0.1, 0.3])
def test_the_label_smoothing_note_gives_the_floor_torch_computes(smoothing):
    import torch
    import torch.nn.functional as F


    target = torch.full((1, 10), smoothing / 10)
    target[0, 0] += 1 - smoothing  # the smoothed target: the best a model can answer
    floor = float(F.cross_entropy(target.log(), torch.tensor([0]), label_smoothing=smoothing))
    assert f"cannot fall below about {floor:.2f}" in smoothing_note(smoothing)
    assert smoothing_note(0.0) is None
