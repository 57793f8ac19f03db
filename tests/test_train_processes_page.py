"""The Train page's *Advanced* section: how many processes train a run, and a run on several shown as such."""

from __future__ import annotations

import time

from tests.test_train_page import Gate, button, by_label, nothing_left_training, open_page  # noqa: F401 (fixture)
from ui.jobs import job_manager


def test_advanced_offers_one_process_per_core_and_start_trains_on_the_chosen_number(monkeypatch):
    monkeypatch.setattr("ui.train.usable_cores", lambda: 4)
    monkeypatch.setattr("core.jobs._record_training", Gate())
    app = open_page()
    processes = by_label(app.selectbox, "Processes")
    assert list(processes.options) == ["1", "2", "3", "4"] and processes.value == 1
    processes.set_value(2).run()
    assert any("DistributedDataParallel" in caption.value for caption in app.caption)
    button(app, "Start training").click().run()
    assert job_manager().latest().processes == 2
    deadline = time.monotonic() + 30
    while job_manager().latest().status == "queued" and time.monotonic() < deadline:
        time.sleep(0.05)  # the manager's thread takes it up a moment later: under load, after the page's rerun
    app.run()
    assert "Starting 2 training processes" in " ".join(str(bar.text) for bar in app.get("progress"))


def test_a_public_demo_trains_on_one_process_and_offers_no_choice(monkeypatch):
    monkeypatch.setenv("DIGIT_STUDIO_PUBLIC_DEMO", "1")
    app = open_page()
    assert not [box for box in app.selectbox if box.label == "Processes"]
