"""The Train page's logic in AppTest, on scikit-learn's digits: choosing, validating, starting, stopping, results."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.store import RunStore, default_runs_dir
from ui.jobs import job_manager
from ui.train import live_refresh_seconds, redraw_note, usable_cores

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "train.py")


@pytest.fixture(autouse=True)
def nothing_left_training():
    """Whatever a test started, passed or failed, is stopped before the next one."""
    yield
    assert job_manager().stop_all(60)


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


def errors(app: AppTest) -> list[str]:
    return [element.value for element in app.error]


def quick_run(app: AppTest, epochs: int = 2, images: int = 400) -> None:
    by_label(app.number_input, "Epochs").set_value(epochs)
    by_label(app.number_input, "Training images (0: all)").set_value(images)
    by_label(app.number_input, "Batch size").set_value(50)
    app.run()


def wait_until(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_page_opens_with_the_digits_preset_filled_in():
    app = open_page()
    assert by_label(app.selectbox, "Dataset").value == "digits"
    assert by_label(app.selectbox, "Start from").value == "digits-cnn"
    assert by_label(app.selectbox, "Model").value == "digits-cnn"
    assert by_label(app.number_input, "Epochs").value == 1000
    assert by_label(app.number_input, "Learning rate").value == pytest.approx(0.5)
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


@pytest.mark.parametrize("label, value, message", [
    ("Learning rate", 0.0, "learning rate must be a positive number"),
    ("Learning rate", -0.1, "learning rate must be a positive number"),
    ("Batch size", 0, "batch size must be at least 1"),
    ("Batch size", 5000, "larger than the 1347 training images"),
    ("Epochs", 0, "epochs must be at least 1"),
    ("Epochs", 10_001, "epochs must be at most 10,000"),
])
def test_settings_out_of_range_are_refused_with_a_message(label, value, message):
    app = open_page()
    by_label(app.number_input, label).set_value(value).run()
    assert any(message in text for text in errors(app)), errors(app)
    assert button(app, "Start training").disabled
    assert RunStore(default_runs_dir()).list_runs() == []


def test_a_short_run_trains_in_the_background_and_shows_its_results():
    app = open_page()
    quick_run(app)
    button(app, "Start training").click().run()
    assert job_manager().wait_idle(120)
    app.run()
    assert not app.exception, app.exception
    assert any("Finished." in element.value for element in app.success)
    assert any(metric.label == "Test accuracy" for metric in app.metric)
    assert app.get("plotly_chart"), "charts expected"
    runs = RunStore(default_runs_dir()).list_runs()
    assert len(runs) == 1 and runs[0].status == "done" and runs[0].get("recipe") == "digits-cnn"
    assert runs[0].get("epochs_completed") == 2 and runs[0].get("train_size") == 400


def test_stop_keeps_the_run_as_stopped_with_its_last_epoch():
    app = open_page()
    by_label(app.number_input, "Epochs").set_value(5000).run()
    button(app, "Start training").click().run()
    manager = job_manager()
    wait_until(lambda: (manager.latest().epoch_points or ()) != ())
    app.run()
    (runs,) = [table.value for table in app.dataframe if "status" in table.value.columns]
    assert runs["status"].tolist() == ["training (live above)"] and runs["epochs"].isna().all()  # not stale figures
    slower = any("The charts redraw every 2 s" in caption.value for caption in app.caption)
    assert slower == (usable_cores() <= 2)  # said on the page wherever the redraw is slowed
    button(app, "Stop").click().run()
    assert manager.wait_idle(10)
    app.run()
    assert any("Stopped." in element.value for element in app.warning)
    info = RunStore(default_runs_dir()).list_runs()[0]
    assert info.status == "stopped" and info.get("epochs_completed") >= 1 and info.has_weights


def test_a_second_start_is_queued_and_a_full_queue_is_refused():
    app = open_page()
    by_label(app.number_input, "Epochs").set_value(5000).run()
    button(app, "Start training").click().run()
    for _ in range(2):
        button(app, "Queue training").click().run()
    assert "Waiting: number" not in " ".join(str(p.text) for p in app.get("progress"))  # the page shows the running one
    assert len([job for job in job_manager().jobs() if job.status == "queued"]) == 2
    button(app, "Queue training").click().run()
    assert any("already waiting" in text for text in errors(app)), errors(app)
    app.run()  # a rerun (the running job's first save reruns the page) keeps the message while the queue is full
    assert any("already waiting" in text for text in errors(app)), errors(app)
    job_manager().stop(max(job.job_id for job in job_manager().jobs()))  # room in the queue again
    app.run()
    assert not any("already waiting" in text for text in errors(app)), errors(app)


def test_switching_to_mnist_picks_its_fast_preset_and_a_missing_dataset_is_explained(mnist_dir, monkeypatch):
    app = open_page()
    assert any("MNIST" in expander.label and "not on this machine" in expander.label for expander in app.expander)
    monkeypatch.setenv("DIGIT_STUDIO_DATA", str(mnist_dir))
    app.run()
    by_label(app.selectbox, "Dataset").set_value("mnist").run()
    assert by_label(app.selectbox, "Start from").value == "fast-cnn-99"
    assert by_label(app.selectbox, "Model").value == "fast-cnn"
    assert by_label(app.number_input, "Epochs").value == 8
    assert not errors(app) and not button(app, "Start training").disabled


def test_live_charts_redraw_every_second_unless_the_browser_shares_two_cores_with_training(monkeypatch):
    assert [live_refresh_seconds(cores) for cores in (1, 2, 4, 16)] == [2.0, 2.0, 1.0, 1.0]
    assert redraw_note(1.0, 4) is None and "on this 2-core machine" in redraw_note(2.0, 2)
    monkeypatch.setenv("DIGIT_STUDIO_REDRAW_SECONDS", "1.5")
    assert live_refresh_seconds(2) == live_refresh_seconds(16) == 1.5
    assert redraw_note(1.5, 16) == "The charts redraw every 1.5 s, as `DIGIT_STUDIO_REDRAW_SECONDS` asks."
    for unusable in ("soon", "0.1", "60", "nan", ""):  # ignored: the page's own choice, and its note, stand
        monkeypatch.setenv("DIGIT_STUDIO_REDRAW_SECONDS", unusable)
        assert [live_refresh_seconds(cores) for cores in (2, 4)] == [2.0, 1.0]


def test_the_results_compare_with_the_reported_accuracy_and_call_a_tie_a_tie():
    from ui.results import versus_reported

    source = {"help": "The recipe reports 98.67%."}
    assert versus_reported(0.98671, 0.9867) == {"delta": "same as reported", "delta_color": "off",
                                                "delta_arrow": "off", **source}  # was a red "-0.00%"
    assert versus_reported(0.99, 0.9867) == {"delta": "+0.33% vs reported", **source}
    assert versus_reported(0.95, None) == {"delta": None} and versus_reported(None, 0.99) == {"delta": None}
