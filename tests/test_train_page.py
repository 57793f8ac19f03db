"""The Train page's logic in AppTest, on scikit-learn's digits: choosing, validating, starting, stopping, the queue,
how jobs end, the saved runs (compare, results, download, delete) and the public demo's limits."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load as load_safetensors
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from core.config import SETTING_BOUNDS
from core.demo import DEMO_ENV
from core.jobs import JobManager, JobRefused
from core.record import RecordedTraining
from core.store import RunError, RunStore, default_runs_dir
from core.training import EpochEnd, TrainConfig
from ui.jobs import job_manager
from ui.train import live_refresh_seconds, redraw_note, run_label, usable_cores
from ui.train_format import run_names

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "train.py")
ALPHA, BRAVO, CHARLIE = "2026-03-alpha", "2026-02-bravo", "2026-01-charlie"  # listed newest first: in this order


@pytest.fixture(autouse=True)
def nothing_left_training():
    """Whatever a test started, passed or failed, is stopped before the next one."""
    yield
    assert job_manager().stop_all(60)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """One small digits run, trained once for the module; tests copy it into the page's runs folder."""
    config = TrainConfig(model="digits-cnn", dataset="digits", epochs=3, batch_size=50, train_limit=400,
                         learning_rate=0.01)
    recorded = RecordedTraining(config, RunStore(tmp_path_factory.mktemp("tiny")))
    assert list(recorded.events())[-1].status == "done"
    return recorded.run_dir


def saved_runs(tiny_run: Path, run_ids: list[str], changes: dict[str, dict] | None = None) -> list[str]:
    """Copies of the tiny run under these ids (their metadata's id to match), with `changes` to some metadata."""
    for run_id in run_ids:
        folder = default_runs_dir() / run_id
        shutil.copytree(tiny_run, folder)
        meta = json.loads((folder / "meta.json").read_text())
        meta.update({"run_id": run_id, **(changes or {}).get(run_id, {})})
        (folder / "meta.json").write_text(json.dumps(meta))
    return run_ids


def listed() -> list[str]:
    return [info.run_id for info in RunStore(default_runs_dir()).list_runs()]


class Gate:
    """A job body for core.jobs that holds the worker until its job is stopped: a job that runs as long as a test
    needs, without training."""

    def __init__(self) -> None:
        self.started = threading.Event()

    def __call__(self, job, manager: JobManager) -> None:
        self.started.set()
        job.stop_requested.wait(60)
        manager.finish(job, "stopped", "stopped by request")


def open_page() -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=120)
    app.run()
    assert not app.exception, app.exception
    return app


def by_label(widgets, label: str):
    matches = [widget for widget in widgets if widget.label == label]
    assert matches, f"no widget labelled {label!r}: {[w.label for w in widgets]}"
    return matches[0]


def button(app: AppTest, label: str):
    return by_label(app.button, label)


def labels(app: AppTest) -> list[str]:
    return [widget.label for widget in app.button]


def field(app: AppTest, label: str):
    return by_label(app.text_input, label)


def type_into(app: AppTest, label: str, text: str) -> None:
    field(app, label).set_value(text)
    app.run()
    assert not app.exception, app.exception


def errors(app: AppTest) -> list[str]:
    return [element.value for element in app.error]


def warnings(app: AppTest) -> list[str]:
    return [element.value for element in app.warning]


def every_text(app: AppTest) -> str:
    """The source of every text-bearing element on the page, in one string."""
    kinds = ("markdown", "caption", "subheader", "success", "info", "warning", "error", "text")
    return "\n".join(str(element.value) for kind in kinds for element in getattr(app, kind))


def quick_run(app: AppTest, epochs: int = 2, images: int = 400) -> None:
    type_into(app, "Epochs", str(epochs))
    type_into(app, "Training images (0: all)", str(images))
    type_into(app, "Batch size", "50")


def wait_until(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def runs_table(app: AppTest):
    (table,) = [table for table in app.dataframe if "Status" in table.value.columns]
    return table


def pick(app: AppTest, rows: list[int], key: str | None = None) -> str:
    """Select these rows of the runs table (as the browser reports a selection); returns the table's key."""
    key = key or runs_table(app).key
    app.session_state[key] = {"selection": {"rows": rows, "columns": [], "cells": []}}
    app.run()
    assert not app.exception, app.exception
    return key


def figures(app: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]


def plotly_array(value) -> np.ndarray:
    """An array from a figure's JSON: a list, or plotly's typed form {"dtype", "bdata" (base64), "shape"}."""
    if isinstance(value, dict):
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        return flat.reshape([int(size) for size in str(value.get("shape", len(flat))).split(",")])
    return np.asarray(value)


def figure_titled(app: AppTest, title: str) -> dict:
    (figure,) = [f for f in figures(app) if f["layout"].get("title", {}).get("text") == title]
    return figure


# ---- settings ----------------------------------------------------------------------------------------------------

def test_the_page_opens_with_the_digits_preset_filled_in():
    app = open_page()
    assert by_label(app.selectbox, "Dataset").value == "digits"
    assert by_label(app.selectbox, "Start from").value == "digits-cnn"
    assert by_label(app.selectbox, "Model").value == "digits-cnn"
    assert field(app, "Epochs").value == "1000"
    assert field(app, "Learning rate").value == "0.5"
    assert not button(app, "Start training").disabled
    assert any("parameters" in expander.label for expander in app.expander)  # the layer summary
    assert any(caption.value.startswith("Training runs on: **CPU") for caption in app.caption)
    assert not errors(app)


def test_choosing_custom_settings_and_another_model_updates_the_summary():
    app = open_page()
    by_label(app.selectbox, "Start from").set_value("custom").run()
    by_label(app.selectbox, "Model").set_value("lenet5").run()
    assert by_label(app.selectbox, "Optimizer").value == "adam"
    assert any("61,706 parameters" in expander.label for expander in app.expander)


@pytest.mark.parametrize("label, setting", [("Epochs", "epochs"), ("Batch size", "batch_size"),
                                            ("Learning rate", "learning_rate"), ("Seed", "seed"),
                                            ("Weight decay", "weight_decay"), ("Label smoothing", "label_smoothing")])
def test_each_number_field_shows_the_range_core_validates(label, setting):
    app = open_page()
    assert SETTING_BOUNDS[setting].describe().capitalize() in field(app, label).help


@pytest.mark.parametrize("label, typed, note", [
    ("Epochs", "20000", "Epochs: 20000 is above the maximum 10,000; still 1000."),
    ("Epochs", "0", "Epochs: 0 is below the minimum 1; still 1000."),
    ("Epochs", "2.5", "Epochs: 2.5 is not a whole number; still 1000."),
    ("Epochs", "ten", "Epochs: ten is not a number; still 1000."),
    ("Batch size", "-3", "Batch size: -3 is below the minimum 1; still 100."),
    ("Learning rate", "0", "Learning rate: 0 is not more than 0; still 0.5."),
    ("Learning rate", "nan", "Learning rate: nan is not a finite number; still 0.5."),
    ("Seed", str(2**63), "Seed: 9223372036854775808 is above the maximum 9,223,372,036,854,775,807; still 0."),
    ("Training images (0: all)", "-1", "Training images (0: all): -1 is below the minimum 0; still 0."),
    ("Batch size", "1,5", "Batch size: 1,5 is not a whole number; still 100."),  # a decimal comma: not 15
    ("Batch size", "  ", "Batch size: the field was left empty; still 100."),  # not "Batch size: is not a number"
    ("Learning rate", "0,5,0", "Learning rate: 0,5,0 is not a number; still 0.5."),
])
def test_a_typed_number_out_of_range_is_not_taken_and_the_field_says_so(label, typed, note):
    app = open_page()
    type_into(app, label, typed)
    assert [text.replace("\\", "") for text in warnings(app)] == [note]  # shown as text: Markdown escaped
    assert field(app, label).value == note.rsplit("still ", 1)[1].rstrip(".")  # the field shows what trains
    assert not errors(app) and not button(app, "Start training").disabled
    type_into(app, label, "1")  # a value that is taken clears the note
    assert not warnings(app) and field(app, label).value == "1"


def test_a_note_about_a_value_not_taken_goes_once_another_field_is_typed_in():
    app = open_page()
    type_into(app, "Epochs", "")
    assert [text.replace("\\", "") for text in warnings(app)] == ["Epochs: the field was left empty; still 1000."]
    type_into(app, "Batch size", "-3")
    assert [text.replace("\\", "") for text in warnings(app)] == ["Batch size: -3 is below the minimum 1; still 100."]
    type_into(app, "Learning rate", "0.1")
    assert not warnings(app)  # notes had piled up, one a field, while other fields were typed in
    field(app, "Epochs").set_value("0")
    field(app, "Seed").set_value("-1")  # both sent in one rerun (typed, then Start at once): a note each
    button(app, "Start training").click().run()
    assert len(warnings(app)) == 2


def test_a_whole_number_past_what_a_browser_can_hold_still_reaches_the_checks():
    app = open_page()
    type_into(app, "Batch size", "99999999999999999999")  # past 2**53: Streamlit's number input dropped it unseen
    assert any("batch size 99999999999999999999 is larger than the 1347 training images" in text
               for text in errors(app)), errors(app)
    assert button(app, "Start training").disabled
    type_into(app, "Epochs", "1,000")  # thousands separators read as such
    assert field(app, "Epochs").value == "1000" and not warnings(app)


def test_a_huge_learning_rate_is_taken_with_a_caution():
    app = open_page()
    type_into(app, "Learning rate", "1e9")
    assert field(app, "Learning rate").value == "1000000000" and not button(app, "Start training").disabled
    assert any("A learning rate of 1000000000 is far above the usual" in info.value for info in app.info)
    type_into(app, "Learning rate", "0.5")
    assert not any("far above the usual" in info.value for info in app.info)


@pytest.mark.parametrize("typed, read", [("0,05", "0.05"), ("0,5", "0.5"), ("1,000", "1000"), ("1e-3", "0.001")])
def test_a_decimal_comma_is_read_as_a_decimal_point_and_thousands_as_thousands(typed, read):
    app = open_page()
    type_into(app, "Learning rate", typed)  # "0,05" was read as 5: a learning rate 100 times too large, unsaid
    assert field(app, "Learning rate").value == read and not warnings(app)


def test_settings_the_data_cannot_train_are_refused_with_a_message():
    app = open_page()
    type_into(app, "Batch size", "5000")
    assert any("larger than the 1347 training images" in text for text in errors(app)), errors(app)
    assert button(app, "Start training").disabled
    assert RunStore(default_runs_dir()).list_runs() == []


def test_switching_to_mnist_picks_its_fast_preset_and_a_missing_dataset_is_explained(mnist_dir, monkeypatch):
    app = open_page()
    assert any("MNIST" in expander.label and "not on this machine" in expander.label for expander in app.expander)
    monkeypatch.setenv("DIGIT_STUDIO_DATA", str(mnist_dir))
    app.run()
    by_label(app.selectbox, "Dataset").set_value("mnist").run()
    assert by_label(app.selectbox, "Start from").value == "quick-cnn-99"  # 99 % in about 10 s (bench/README.md)
    assert by_label(app.selectbox, "Model").value == "quick-cnn"
    assert field(app, "Epochs").value == "6" and field(app, "Label smoothing").value == "0.1"  # the whole preset
    assert not errors(app) and not button(app, "Start training").disabled


# ---- training, the queue and how jobs end ---------------------------------------------------------------------------

def test_a_short_run_trains_in_the_background_and_shows_its_results():
    app = open_page()
    quick_run(app)
    button(app, "Start training").click().run()
    assert job_manager().wait_idle(120)
    app.run()
    assert not app.exception, app.exception
    assert any("Finished." in element.value for element in app.success)
    assert any(metric.label == "Test accuracy" for metric in app.metric)
    runs = RunStore(default_runs_dir()).list_runs()
    assert len(runs) == 1 and runs[0].status == "done" and runs[0].get("recipe") == "digits-cnn"
    assert runs[0].get("epochs_completed") == 2 and runs[0].get("train_size") == 400


def test_stop_keeps_the_run_as_stopped_with_its_last_epoch():
    app = open_page()
    type_into(app, "Epochs", "5000")
    button(app, "Start training").click().run()
    manager = job_manager()
    wait_until(lambda: (manager.latest().epoch_points or ()) != ())
    app.run()
    runs = runs_table(app).value
    assert runs["Status"].tolist() == ["training (see above)"] and runs["Epochs"].tolist() == ["–"]  # not stale
    slower = any("The charts redraw every 2 s" in caption.value for caption in app.caption)
    assert slower == (usable_cores() <= 2)  # said on the page wherever the redraw is slowed
    button(app, "Stop").click().run()
    assert manager.wait_idle(10)
    app.run()
    assert any("Stopped." in element.value for element in app.warning)
    info = RunStore(default_runs_dir()).list_runs()[0]
    assert info.status == "stopped" and info.get("epochs_completed") >= 1 and info.has_weights


def started_epochs(before: set[int]) -> list[int]:
    return [job.config.epochs for job in job_manager().jobs() if job.job_id not in before]


def test_a_value_typed_just_before_start_is_the_value_that_trains(monkeypatch):
    """A browser can send a typed value in the click's own rerun (typed, then Start at once): Start trained the value
    the button was drawn with, 1,000 epochs after 5,000 was typed. A refused value starts nothing."""
    monkeypatch.setattr("core.jobs._record_training", Gate())
    app = open_page()
    before = {job.job_id for job in job_manager().jobs()}
    field(app, "Epochs").set_value("0")
    button(app, "Start training").click().run()
    assert started_epochs(before) == [] and [text.replace("\\", "") for text in warnings(app)] == [
        "Epochs: 0 is below the minimum 1; still 1000."]
    assert field(app, "Epochs").value == "1000"
    field(app, "Epochs").set_value("5,000")
    button(app, "Start training").click().run()
    assert started_epochs(before) == [5000] and not warnings(app) and field(app, "Epochs").value == "5000"


def test_a_second_start_is_queued_and_a_full_queue_is_refused(monkeypatch):
    monkeypatch.setattr("core.jobs._record_training", Gate())
    app = open_page()
    button(app, "Start training").click().run()
    for _ in range(2):
        button(app, "Queue training").click().run()
    bars = " ".join(str(p.text) for p in app.get("progress"))
    assert "Waiting in the queue" not in bars  # the page shows the running one
    assert len([job for job in job_manager().jobs() if job.status == "queued"]) == 2
    button(app, "Queue training").click().run()
    assert any("already waiting" in text for text in errors(app)), errors(app)
    app.run()  # a rerun (the running job's first save reruns the page) keeps the message while the queue is full
    assert any("already waiting" in text for text in errors(app)), errors(app)
    job_manager().stop(max(job.job_id for job in job_manager().jobs()))  # room in the queue again
    app.run()
    assert not any("already waiting" in text for text in errors(app)), errors(app)


def test_the_queue_lists_each_waiting_run_with_its_settings_and_cancel_removes_it(monkeypatch):
    gate = Gate()
    monkeypatch.setattr("core.jobs._record_training", gate)
    app = open_page()
    button(app, "Start training").click().run()
    assert gate.started.wait(30)
    type_into(app, "Epochs", "7")
    type_into(app, "Learning rate", "0.05")
    button(app, "Queue training").click().run()
    assert "Waiting in the queue (1)" in every_text(app)
    assert "1. Digits CNN (recipe) on scikit-learn digits (8x8) · 7 epochs · batch size 100 · learning rate 0.05" \
        in every_text(app).replace("\\", "")
    assert labels(app).count("Cancel") == 1 and "Stop" in labels(app)
    assert "Your run waits in the queue behind this one." in every_text(app)
    button(app, "Cancel").click().run()
    assert [job.status for job in job_manager().jobs()] == ["cancelled", "running"]
    assert "Waiting in the queue" not in every_text(app) and "Cancel" not in labels(app)
    assert "Your run waits in the queue" not in every_text(app)  # it stayed until the running one ended


def ends_as(status: str, reason: str, epochs: int):
    """A job body that records `epochs` epochs and ends with this status and reason."""
    def run_job(job, manager: JobManager) -> None:
        for epoch in range(1, epochs + 1):
            manager.record(job, EpochEnd(epoch, 10, epoch * 4, 0.5, 0.8, 0.6, 0.75, float(epoch), 100.0))
        manager.finish(job, status, reason)
    return run_job


@pytest.mark.parametrize("status, reason, epochs, kind, text", [
    ("diverged", "the loss became NaN or infinite at epoch 3: lower the learning rate", 2, "warning",
     "Diverged: the loss became NaN or infinite at epoch 3: lower the learning rate. The run keeps epoch 2's weights"),
    ("diverged", "the weights became infinite at epoch 1", 0, "warning",
     "Diverged: the weights became infinite at epoch 1. No epoch had finished, so there are no weights to keep."),
    ("failed", "the run could not be saved: [Errno 28] No space left on device", 1, "error",
     "Failed: the run could not be saved: [Errno 28] No space left on device."),
    ("stopped", "stopped by request", 1, "warning", "Stopped. The run keeps epoch 1's weights"),
    ("cancelled", "cancelled before it started", 0, "info", "Cancelled: cancelled before it started."),
])
def test_every_way_a_job_ends_is_said_with_its_reason(monkeypatch, status, reason, epochs, kind, text):
    monkeypatch.setattr("core.jobs._record_training", ends_as(status, reason, epochs))
    app = open_page()
    button(app, "Start training").click().run()
    assert job_manager().wait_idle(30)
    app.run()
    shown = [element.value.replace("\\", "") for element in getattr(app, kind)]
    assert any(line.startswith(text) for line in shown), shown
    assert "Saved as run" not in every_text(app) and not app.success


def test_a_real_run_that_diverges_is_said_to_have_diverged_with_its_reason():
    app = open_page()
    by_label(app.selectbox, "Start from").set_value("custom").run()
    by_label(app.selectbox, "Model").set_value("mlp").run()
    by_label(app.selectbox, "Optimizer").set_value("sgd").run()
    quick_run(app)
    type_into(app, "Learning rate", "1e30")
    button(app, "Start training").click().run()
    assert job_manager().wait_idle(60)
    app.run()
    shown = [text.replace("\\", "") for text in warnings(app)]
    assert any(text.startswith("Diverged: the training diverged") and "try a lower one" in text for text in shown), shown
    assert "Saved as run" not in every_text(app) and not app.success


def test_a_run_whose_save_fails_ends_failed_and_nothing_says_it_was_saved(monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(RunStore, "save", disk_full)
    app = open_page()
    quick_run(app)
    button(app, "Start training").click().run()
    assert job_manager().wait_idle(60)
    app.run()
    assert any("Failed: the run could not be saved" in text and "No space left" in text for text in errors(app))
    assert "Saved as run" not in every_text(app) and not app.success
    assert RunStore(default_runs_dir()).list_runs() == []


# ---- saved runs ------------------------------------------------------------------------------------------------

STARTED = {ALPHA: "2026-03-01T10:15:00+00:00", BRAVO: "2026-02-01T09:05:00+00:00",
           CHARLIE: "2026-01-01T08:00:00+00:00"}  # each copy its own time, so each its own name


def names_of(run_ids: list[str]) -> dict[str, str]:
    """The runs' names as the page writes them."""
    return run_names(RunStore(default_runs_dir()).info(run_id) for run_id in run_ids)


def test_delete_removes_exactly_the_picked_run_after_one_confirmation_and_clears_the_selection(tiny_run):
    saved_runs(tiny_run, [ALPHA, BRAVO, CHARLIE], {run_id: {"created_at": at} for run_id, at in STARTED.items()})
    app = open_page()
    assert runs_table(app).value["Run id"].tolist() == [ALPHA, BRAVO, CHARLIE]
    names = names_of([ALPHA, BRAVO, CHARLIE])
    old_table = pick(app, [1])
    button(app, "Delete 1 run").click().run()
    assert listed() == [ALPHA, BRAVO, CHARLIE]  # asked, not done
    (question,) = [text.replace("\\", "") for text in warnings(app) if "for good" in text]
    assert f"- {names[BRAVO]} (run id {BRAVO})" in question  # named as in the table, its id after
    assert names[ALPHA] not in question and names[CHARLIE] not in question and ALPHA not in question
    button(app, "Delete 1 run for good").click().run()
    assert listed() == [ALPHA, CHARLIE]
    assert runs_table(app).value["Run id"].tolist() == [ALPHA, CHARLIE]  # charlie now sits in bravo's row
    assert not [label for label in labels(app) if label.startswith("Delete")]  # nothing is picked any more
    assert any(caption.value.startswith("Tick runs in the table") for caption in app.caption)
    pick(app, [1], key=old_table)  # the browser repeating the old table's selection picks nothing
    assert not [label for label in labels(app) if label.startswith("Delete")]
    assert listed() == [ALPHA, CHARLIE]


def test_a_delete_asked_for_one_selection_does_not_apply_to_another(tiny_run):
    saved_runs(tiny_run, [ALPHA, BRAVO, CHARLIE])
    app = open_page()
    table = pick(app, [0])
    button(app, "Delete 1 run").click().run()
    pick(app, [2], key=table)  # another run picked before confirming: the question goes, and nothing is deleted
    assert "Delete 1 run for good" not in labels(app)
    assert listed() == [ALPHA, BRAVO, CHARLIE]


def test_compare_draws_exactly_the_picked_runs_curves(tiny_run):
    curves = {ALPHA: [0.2, 0.4, 0.6], BRAVO: [0.1, 0.1, 0.1], CHARLIE: [0.3, 0.5, 0.9]}
    history = json.loads((tiny_run / "meta.json").read_text())["history"]
    saved_runs(tiny_run, list(curves), {run_id: {"history": [{**row, "test_accuracy": accuracy, "train_loss": 1 - accuracy}
                                                            for row, accuracy in zip(history, values)]}
                                        for run_id, values in curves.items()})
    app = open_page()
    pick(app, [0, 2])
    store = RunStore(default_runs_dir())
    names = [html.escape(run_label(store.info(run_id))) for run_id in (ALPHA, CHARLIE)]
    accuracy, loss = figure_titled(app, "Test accuracy by epoch"), figure_titled(app, "Training loss by epoch")
    assert [trace["name"] for trace in accuracy["data"]] == names
    assert [trace["y"] for trace in accuracy["data"]] == [[pytest.approx(100 * a) for a in curves[run_id]]
                                                         for run_id in (ALPHA, CHARLIE)]  # in percent
    assert len({trace["line"]["color"] for figure in (accuracy, loss) for trace in figure["data"]}) == 2
    assert [trace["y"] for trace in loss["data"]] == [[pytest.approx(1 - a) for a in curves[run_id]]
                                                     for run_id in (ALPHA, CHARLIE)]
    assert [trace["x"] for trace in accuracy["data"]] == [[1, 2, 3], [1, 2, 3]]
    assert accuracy["layout"]["xaxis"]["dtick"] == 1  # a tick at each epoch, never at 0.5 or 2.5 of them
    assert any(m.value.startswith("**Curves of the picked runs**, a colour each") for m in app.markdown)
    pick(app, [2])
    assert any(m.value.startswith("**Curves of this run**: drag to zoom") for m in app.markdown)
    assert not any("a colour each" in m.value for m in app.markdown)  # one run, one colour


def test_picked_runs_with_the_same_curves_are_said_to_hide_one_another(tiny_run):
    history = json.loads((tiny_run / "meta.json").read_text())["history"]
    other = [{**row, "test_accuracy": 0.5, "train_loss": 0.5} for row in history]
    saved_runs(tiny_run, [ALPHA, BRAVO, CHARLIE], {BRAVO: {"history": other}})  # alpha and charlie: one history
    names = run_names(RunStore(default_runs_dir()).list_runs())
    app = open_page()
    pick(app, [0, 1, 2])
    [said] = [re.sub(r"\\(.)", r"\1", caption.value) for caption in app.caption  # Markdown's escapes read
              if "have the same curves" in caption.value]
    assert names[ALPHA] in said and names[CHARLIE] in said and names[BRAVO] not in said
    pick(app, [0, 1])
    assert not [caption for caption in app.caption if "have the same curves" in caption.value]


@pytest.fixture
def offered(monkeypatch) -> list[tuple[bytes, str | None]]:
    """Every file a download button offers in this test: (bytes, file name)."""
    files, add = [], MediaFileManager.add

    def recording(self, data, mimetype, coordinates, file_name=None, is_for_static_download=False):
        if is_for_static_download:
            files.append((data, file_name))
        return add(self, data, mimetype, coordinates, file_name=file_name,
                   is_for_static_download=is_for_static_download)

    monkeypatch.setattr(MediaFileManager, "add", recording)
    return files


def test_download_builds_the_picked_runs_zip_only_when_asked(tiny_run, monkeypatch, offered):
    import core.archive

    built, archive = [], core.archive.run_archive
    monkeypatch.setattr(core.archive, "run_archive", lambda info: built.append(info.run_id) or archive(info))
    saved_runs(tiny_run, [ALPHA, BRAVO, CHARLIE])
    app = open_page()
    pick(app, [1])
    app.run()
    assert built == [] and offered == []  # picking a run, and reruns, build nothing
    button(app, "Prepare download (.zip)").click().run()
    assert built == [BRAVO]
    bravo = names_of([ALPHA, BRAVO, CHARLIE])[BRAVO]  # the three started alike: each name ends with its id's end
    assert [b.label for b in app.download_button] == ["Download the .zip"]
    assert f"{bravo}, saved as {BRAVO}.zip" in [caption.value.replace("\\", "") for caption in app.caption]
    data, name = offered[-1]
    assert name == f"{BRAVO}.zip"
    weights = RunStore(default_runs_dir()).info(BRAVO).get("weights_file")
    with zipfile.ZipFile(io.BytesIO(data)) as zipped:
        assert sorted(zipped.namelist()) == sorted([f"{BRAVO}/meta.json", f"{BRAVO}/{weights}"])
        assert json.loads(zipped.read(f"{BRAVO}/meta.json"))["run_id"] == BRAVO
        tensors = load_safetensors(zipped.read(f"{BRAVO}/{weights}"))
    assert tensors.keys() == RunStore(default_runs_dir()).load(BRAVO).model.state_dict().keys()
    app.run()
    assert built == [BRAVO]  # built once
    pick(app, [0])
    assert not app.download_button and "Prepare download (.zip)" in labels(app)  # another run: asked for again


def test_a_download_the_archive_refuses_is_said_as_text(tiny_run, monkeypatch):
    import core.archive

    def refuse(info):
        raise RunError(f"Run {info.run_id} cannot be downloaded: its weights file is a link.")

    monkeypatch.setattr(core.archive, "run_archive", refuse)
    saved_runs(tiny_run, [ALPHA])
    app = open_page()
    pick(app, [0])
    button(app, "Prepare download (.zip)").click().run()
    assert [text.replace("\\", "") for text in errors(app)] == [
        f"Run {ALPHA} cannot be downloaded: its weights file is a link."]
    assert not app.download_button


def test_results_show_the_confusion_matrix_of_the_whole_test_set_and_the_wrong_answers(tiny_run):
    from core.data import load_dataset
    from core.evaluation import predict_split

    saved_runs(tiny_run, [ALPHA])
    app = open_page()
    pick(app, [0])
    button(app, "Show results").click().run()
    assert not app.exception, app.exception
    data = load_dataset("digits")
    labels_ = data.test_labels.numpy()
    wrong = int((predict_split(RunStore(default_runs_dir()).load(ALPHA), data, "test").argmax(1) != labels_).sum())
    assert 0 < wrong < len(labels_)
    (heatmap,) = [trace for figure in figures(app) for trace in figure["data"] if trace["type"] == "heatmap"]
    counts = plotly_array(heatmap["text"])  # the count written in each cell
    assert counts.sum() == len(labels_) and np.trace(counts) == len(labels_) - wrong
    (title,) = [element.value for element in app.markdown if "got wrong" in element.value]
    assert title.endswith(f" {wrong:,}") or f" {wrong:,}," in title
    (gallery,) = app.image  # one image per mistake, its caption written as text under it
    assert len(gallery.captions) == min(wrong, 60) and all(" → " in caption for caption in gallery.captions)


def test_a_runs_own_words_are_shown_as_text_not_markdown_or_html(tiny_run):
    evil = "**Bold** ![pixel](http://example.invalid/p.png) <b>b</b>"
    saved_runs(tiny_run, [ALPHA], {ALPHA: {"model_title": evil, "device": evil}})
    app = open_page()
    pick(app, [0])
    button(app, "Show results").click().run()
    assert not app.exception, app.exception
    page = every_text(app)
    assert "Results:" in page and "**Bold**" not in page and "![pixel](" not in page and "](http" not in page
    assert "\\*\\*Bold\\*\\*" in page  # there, escaped: it reads as the characters themselves
    legend = json.dumps([trace["name"] for trace in figure_titled(app, "Test accuracy by epoch")["data"]])
    assert "<b>b</b>" not in legend and "&lt;b&gt;b&lt;/b&gt;" in legend  # plotly.js reads tags, decodes entities


# ---- the public demo --------------------------------------------------------------------------------------------

def test_a_public_demo_offers_no_delete(tiny_run, monkeypatch):
    monkeypatch.setenv(DEMO_ENV, "1")
    saved_runs(tiny_run, [ALPHA])
    app = open_page()
    pick(app, [0])
    assert not [label for label in labels(app) if label.startswith("Delete")]
    assert any(caption.value == "Deleting runs is switched off on this public demo." for caption in app.caption)
    assert listed() == [ALPHA]


def test_a_public_demo_without_training_says_so_instead_of_start(monkeypatch):
    monkeypatch.setenv(DEMO_ENV, "no-training")
    app = open_page()
    assert not [label for label in labels(app) if "training" in label.lower()]
    assert any("Training is switched off on this public demo" in element.value for element in app.info)


def test_a_public_demo_caps_training_on_the_page_and_again_when_start_is_pressed(monkeypatch):
    monkeypatch.setenv(DEMO_ENV, "1")
    app = open_page()
    assert any("at most 3 epochs" in text for text in errors(app)) and button(app, "Start training").disabled
    quick_run(app, epochs=2, images=400)
    assert not errors(app) and not button(app, "Start training").disabled
    monkeypatch.setenv(DEMO_ENV, "no-training")  # the button on screen was drawn under the old rules
    button(app, "Start training").click().run()
    assert job_manager().jobs() == []
    assert any("Training is switched off" in text for text in errors(app) + [e.value for e in app.info])


def test_a_public_demo_visitor_has_one_run_at_a_time_and_cannot_stop_anothers(monkeypatch):
    monkeypatch.setenv(DEMO_ENV, "1")
    monkeypatch.setattr("core.jobs._record_training", Gate())
    someone_else = job_manager().submit(TrainConfig(model="digits-cnn", dataset="digits", epochs=1),
                                        owner="another visitor")
    app = open_page()
    quick_run(app, epochs=2, images=400)
    assert "Stop" not in labels(app)  # another visitor's running job
    button(app, "Queue training").click().run()
    assert labels(app).count("Cancel") == 1  # their own waiting run
    button(app, "Queue training").click().run()
    assert any("You already have 1 training waiting or running" in text for text in errors(app)), errors(app)
    assert len(job_manager().jobs()) == 2
    with pytest.raises(JobRefused, match="someone else"):  # what the page's Stop would get for their job
        job_manager().stop(someone_else, owner="test session id")
    assert job_manager().snapshot(someone_else).status == "running"


# ---- redraws and the results headline ------------------------------------------------------------------------

def test_live_charts_redraw_every_second_unless_the_browser_shares_two_cores_with_training(monkeypatch):
    assert [live_refresh_seconds(cores) for cores in (1, 2, 4, 16)] == [2.0, 2.0, 1.0, 1.0]
    assert redraw_note(1.0, 4) is None and "on this 2-core machine" in redraw_note(2.0, 2)
    monkeypatch.setenv("DIGIT_STUDIO_REDRAW_SECONDS", "1.5")
    assert live_refresh_seconds(2) == live_refresh_seconds(16) == 1.5
    assert redraw_note(1.5, 16) == "The charts redraw every 1.5 s, as `DIGIT_STUDIO_REDRAW_SECONDS` asks."
    for unusable in ("soon", "0.1", "60", "nan", ""):  # ignored: the page's own choice, and its note, stand
        monkeypatch.setenv("DIGIT_STUDIO_REDRAW_SECONDS", unusable)
        assert [live_refresh_seconds(cores) for cores in (2, 4)] == [2.0, 1.0]


# ---- how numbers, durations and runs are written ---------------------------------------------------------------

def test_percentages_durations_and_missing_values_are_written_one_way():
    from ui.train_format import count, duration, percent, signed_percent

    assert [duration(s) for s in (0, 42, 185, 3725, None, float("nan"))] == [
        "0 s", "42 s", "3 min 05 s", "1 h 02 min", "–", "–"]
    assert [percent(v) for v in (0.99123, 1, None, "0.5", True)] == ["99.12 %", "100.00 %", "–", "–", "–"]
    assert percent(np.float32(0.5), 0) == "50 %"  # a model's probability, as numpy gives it
    assert signed_percent(-0.0378) == "-3.78 %"
    assert [count(n, "sample") for n in (0, 1, 2, 1200)] == ["0 samples", "1 sample", "2 samples", "1,200 samples"]


def test_the_runs_table_names_runs_by_what_they_are_and_shows_no_none(tiny_run):
    empty_final = {"train_loss": None, "train_accuracy": None, "test_loss": None, "test_accuracy": None}
    saved_runs(tiny_run, [ALPHA, BRAVO], {BRAVO: {"final": empty_final, "train_seconds": 185.0}})
    app = open_page()
    table = runs_table(app).value
    assert table.columns.tolist() == ["Run", "Status", "Epochs", "Test accuracy", "Test loss", "Training time",
                                      "Run id"]  # full headers, all in 1,400 px; no empty "Problem" column
    assert not table.isna().any().any() and "None" not in table.to_string()
    alpha, bravo = table.to_dict("records")
    assert alpha["Run"].startswith("Digits CNN (recipe) · digits · 3 epochs · ") and alpha["Run"] != bravo["Run"]
    assert alpha["Status"] == "finished" and re.fullmatch(r"\d{1,3}\.\d\d %", alpha["Test accuracy"])
    assert (bravo["Test accuracy"], bravo["Test loss"], bravo["Training time"]) == ("–", "–", "3 min 05 s")


def test_a_preset_run_with_changed_settings_is_not_held_to_the_recipes_figure_and_the_page_says_why(tiny_run):
    from streamlit.proto.Metric_pb2 import Metric

    saved_runs(tiny_run, [ALPHA], {ALPHA: {"recipe": "digits-cnn", "reported_accuracy": 0.9867}})
    app = open_page()
    pick(app, [0])
    button(app, "Show results").click().run()
    (accuracy,) = [metric for metric in app.metric if metric.label == "Test accuracy"]
    assert accuracy.proto.delta == "not comparable" and accuracy.proto.color == Metric.MetricColor.GRAY
    assert any("changed the recipe's batch size, optimizer, learning rate, loss" in caption.value.replace("\\", "")
               for caption in app.caption)


def test_the_preset_text_shows_what_was_measured_here_next_to_what_was_published():
    from core.recipes import RECIPES

    app = open_page()
    (note,) = [caption.value for caption in app.caption if caption.value.startswith("Reported: 98.67 %")]
    assert "14,000 steps on 1,347 images" in note
    measured = RECIPES["digits-cnn"].measured[0]
    assert f"Measured here on 1,347 images: {measured.mean * 100:.2f} %" in note
    assert "after 1,000 epochs, as many steps as published" in note


def test_a_fresh_visit_after_a_run_draws_start_and_the_headline_first_and_the_charts_on_the_next_run():
    trainer = open_page()
    quick_run(trainer)
    button(trainer, "Start training").click().run()
    assert job_manager().wait_idle(120)
    visitor = open_page()  # a new session: its first run of the page
    assert not button(visitor, "Start training").disabled and any(m.label == "Test accuracy" for m in visitor.metric)
    assert "Drawing the curves, the confusion matrix and the mistakes..." in every_text(visitor)
    assert not visitor.get("plotly_chart") and not visitor.get("image")  # plotly.js waits: Start comes first
    visitor.run()  # what the fragment's tick asks for, a moment later
    assert any(trace["type"] == "heatmap" for figure in figures(visitor) for trace in figure["data"])
    assert "Drawing the curves" not in every_text(visitor)


def test_the_settings_stay_as_they_were_after_a_visit_to_another_page():
    app = AppTest.from_file(str(Path(PAGE).parent.parent / "streamlit_app.py"), default_timeout=120)
    app.switch_page("pages/train.py").run()
    assert not app.exception, app.exception
    by_label(app.selectbox, "Model").set_value("lenet5")
    by_label(app.selectbox, "Optimizer").set_value("sgd")
    app.run()
    app.switch_page("pages/home.py").run()
    assert not app.exception, app.exception
    app.switch_page("pages/train.py").run()
    assert by_label(app.selectbox, "Model").value == "lenet5"  # Streamlit forgot both after the home page's run
    assert by_label(app.selectbox, "Optimizer").value == "sgd"


@pytest.mark.parametrize("threads, words", [(1, "CPU, 1 thread"), (2, "CPU, 2 threads")])
def test_the_cpu_is_described_with_its_thread_count(threads, words):
    import torch

    from ui.shared import device_description

    suite = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert device_description.__wrapped__() == words  # st.cache_data keeps the function as __wrapped__
    finally:
        torch.set_num_threads(suite)
