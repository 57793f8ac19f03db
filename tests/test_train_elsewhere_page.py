"""The Train page follows runs that other processes train (command line, torchrun, another server or machine), in
AppTest: their progress and curves as they grow, how they end, and how to stop them."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import runlog
from core.store import EVENTS_FILE, default_runs_dir, process_start_time, this_host
from ui import live_chart

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "train.py")
RUN_ID = "20261202-080000-digits-cnn-digits-beef"


@pytest.fixture(autouse=True)
def fresh_looks(monkeypatch):
    """Each run of the page looks at the runs folder afresh: sessions share a look for 0.25 s in the app, and the
    tests wrote the folder since the last run."""
    monkeypatch.setattr(runlog, "POLL_CACHE_SECONDS", 0.0)


@pytest.fixture
def trainer():
    """A process of this machine standing for a `python -m core train` in another terminal."""
    process = subprocess.Popen(["sleep", "120"])
    yield process
    process.kill()
    process.wait()


@pytest.fixture
def drawn(monkeypatch) -> list[dict]:
    """Every live-charts component the page draws: its key and the two figures it is sent."""
    calls: list[dict] = []
    folder = live_chart.component_folder()
    monkeypatch.setattr(live_chart, "_component", lambda: (lambda **args: calls.append(args), folder))
    return calls


def write(record: dict) -> None:
    folder = default_runs_dir() / RUN_ID
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / EVENTS_FILE, "a") as stream:
        stream.write(json.dumps(record) + "\n")


def start_run(pid: int, host: str | None = None, origin: str = "command line") -> None:
    write({"event": "started", "model": "digits-cnn", "dataset": "digits", "parameters": 3018, "epochs": 3,
           "steps_per_epoch": 10, "total_steps": 30, "train_size": 320, "test_size": 450, "device": "cpu",
           "host": host or this_host(), "pid": pid, "pid_started": process_start_time(pid), "origin": origin,
           "model_title": "Digits CNN (recipe)", "reported_accuracy": 0.9867})


def train_steps(first: int, last: int) -> None:
    for step in range(first, last + 1):
        write({"event": "batch", "epoch": 1 + (step - 1) // 10, "epochs": 3, "step": step, "total_steps": 30,
               "loss": 1.0 / step, "accuracy": 0.5, "images_per_second": 250.0, "eta_seconds": 40.0 - step,
               "elapsed_seconds": step * 1.0})
        if step % 10 == 0:
            write({"event": "epoch", "epoch": step // 10, "epochs": 3, "step": step, "train_loss": 0.5,
                   "train_accuracy": 0.8, "test_loss": 0.4, "test_accuracy": 0.8 + step / 1000,
                   "elapsed_seconds": step * 1.0, "images_per_second": 250.0})


def finish(status: str = "done", reason: str = "") -> None:
    write({"event": "finished", "status": status, "reason": reason, "epochs_completed": 3, "test_accuracy": 0.83,
           "test_loss": 0.4, "elapsed_seconds": 30.0, "images_per_second": 250.0})


def rerun(app: AppTest) -> AppTest:
    app.run()
    assert not app.exception, app.exception
    return app


def texts(app: AppTest, *kinds: str, markdown: bool = False) -> str:
    """The elements' texts as read on screen (Markdown's escapes removed), or as sent (`markdown`)."""
    sent = "\n".join(str(element.value) for kind in kinds for element in getattr(app, kind))
    return sent if markdown else re.sub(r"\\(.)", r"\1", sent)


def charts_of(drawn: list[dict]) -> dict:
    (last,) = [call for call in drawn[-3:] if call["key"] == "train_elsewhere_slot_0_charts"][-1:]
    return last


def test_a_run_of_another_process_shows_its_progress_and_curves_and_grows(trainer, drawn):
    start_run(trainer.pid)
    train_steps(1, 15)
    app = AppTest.from_file(PAGE, default_timeout=120)
    rerun(app)
    assert "Digits CNN (recipe) on" in texts(app, "subheader")
    (bar,) = [bar for bar in app.get("progress") if "Epoch 2/3" in bar.proto.text]
    assert "step 15/30" in bar.proto.text and "250 images/s" in bar.proto.text and "left" in bar.proto.text
    assert f"kill -INT {trainer.pid}" in texts(app, "caption") and "Ctrl-C" in texts(app, "caption")
    assert not [b for b in app.button if b.label == "Stop"]  # Stop is for this server's runs only
    assert "Nothing is training" not in texts(app, "info")
    charts = charts_of(drawn)
    train, test = charts["loss"]["data"]
    assert len(train["x"]) == 15 and test["x"] == [1]
    assert charts["accuracy"]["layout"]["annotations"][0]["text"].startswith("reported 98.67")

    train_steps(16, 25)  # it trains on: the next look shows more
    rerun(app)
    charts = charts_of(drawn)
    assert len(charts["loss"]["data"][0]["x"]) == 25 and charts["loss"]["data"][1]["x"] == [1, 2]
    assert any("Epoch 3/3" in bar.proto.text for bar in app.get("progress"))


def test_a_followed_run_says_how_it_ended(trainer, drawn):
    start_run(trainer.pid)
    train_steps(1, 30)
    app = rerun(AppTest.from_file(PAGE, default_timeout=120))
    assert any("Epoch 3/3" in bar.proto.text for bar in app.get("progress"))
    finish()
    rerun(app)
    assert "Finished. Test accuracy 83.00 % after epoch 3." in texts(app, "success")
    assert not any("Epoch 3/3" in bar.proto.text and "left" in bar.proto.text for bar in app.get("progress"))
    assert "Ended elsewhere: Digits CNN (recipe)" in texts(app, "subheader")


def test_a_run_whose_process_died_is_not_shown_running(trainer, drawn):
    start_run(trainer.pid)
    train_steps(1, 12)
    app = rerun(AppTest.from_file(PAGE, default_timeout=120))
    assert any("Epoch 2/3" in bar.proto.text for bar in app.get("progress"))
    trainer.kill()
    trainer.wait()
    rerun(app)
    assert not any("Epoch 2/3" in bar.proto.text for bar in app.get("progress"))
    assert "Interrupted" in texts(app, "warning")
    fresh = rerun(AppTest.from_file(PAGE, default_timeout=120))  # a new visit: nothing is training
    assert not fresh.get("progress") and "Nothing is training" in texts(fresh, "info")


def test_a_run_of_another_machine_says_where_to_stop_it_and_its_words_are_text(drawn):
    start_run(4242, host="gpu-box-*1*")
    train_steps(1, 5)
    app = rerun(AppTest.from_file(PAGE, default_timeout=120))
    captions = texts(app, "caption", markdown=True)
    assert "\\*1\\*" in captions and "Stop it where it runs" in captions  # Markdown escaped: no italics
    assert "on gpu-box-*1*" in texts(app, "caption")
    assert any("Epoch 1/3" in bar.proto.text for bar in app.get("progress"))
