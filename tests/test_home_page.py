"""Home in AppTest: its runs table and best run written as the Train page writes them, and where to go next."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.inference import DEFAULT_MODEL_DIR
from core.store import RunStore, default_runs_dir, process_start_time
from ui.train_format import run_names

REPO = Path(__file__).resolve().parents[1]
BEST, OTHER, LIVE = "20261201-101500-best", "20261130-090000-other", "20261202-080000-live"


def copy_run(run_id: str, **changes: object) -> None:
    """The shipped model's folder as a saved run under this id, with some metadata changed."""
    folder = shutil.copytree(DEFAULT_MODEL_DIR, default_runs_dir() / run_id)
    meta = json.loads((folder / "meta.json").read_text())
    meta.update({"run_id": run_id, **changes})
    (folder / "meta.json").write_text(json.dumps(meta))


def open_app(script: str) -> AppTest:
    app = AppTest.from_file(str(REPO / script), default_timeout=60).run()
    assert not app.exception, app.exception
    return app


def test_home_lists_runs_by_name_as_the_train_page_does_and_names_the_best_one():
    copy_run(BEST, created_at="2026-12-01T10:15:00+00:00")
    copy_run(OTHER, created_at="2026-11-30T09:00:00+00:00", final={"test_accuracy": 0.9512, "test_loss": 0.2})
    copy_run(LIVE, created_at="2026-12-02T08:00:00+00:00", status="running", pid=os.getpid(),
             pid_started=process_start_time(os.getpid()))
    app = open_app("pages/home.py")
    names = run_names(RunStore(default_runs_dir()).list_runs())
    (table,) = [table.value for table in app.dataframe]
    assert table.columns.tolist() == ["Run", "Status", "Epochs", "Test accuracy", "Test loss", "Training time",
                                      "Run id"]
    rows = {row["Run id"]: row for row in table.to_dict("records")}
    assert rows[BEST]["Run"] == names[BEST] and rows[BEST]["Run"].startswith("Fast CNN (modern) · MNIST · 8 epochs")
    assert (rows[BEST]["Status"], rows[BEST]["Test accuracy"]) == ("finished", "99.15 %")
    assert rows[OTHER]["Test accuracy"] == "95.12 %"
    assert rows[LIVE]["Status"] == "training (see the Train page)"  # not "see above": Home has no live panel
    (best,) = [caption.value.replace("\\", "") for caption in app.caption if "best finished run" in caption.value]
    assert best.startswith(f"The best finished run is {names[BEST]}, with 99.15 % test accuracy.")
    assert BEST not in best


def test_where_to_go_next_links_each_page_with_what_it_does_before_the_terminal_commands():
    app = open_app("streamlit_app.py")  # the frame gives Home its pages to link to
    items = [("link", element.proto.page) if element.type == "page_link" else ("text", element.value)
             for element in app.main if element.type in ("page_link", "caption")]
    links = [position for position, (kind, _) in enumerate(items) if kind == "link"]
    assert [items[position][1] for position in links] == ["train", "explore", "predict"]
    for position in links:  # under each link, a sentence on what that page does
        kind, text = items[position + 1]
        assert kind == "text" and len(text.split()) >= 8 and text.endswith("."), text
    terminal = next(position for position, (_, text) in enumerate(items) if "python -m core" in str(text))
    assert terminal > max(links)  # the pages first; the command line after them


def test_a_dataset_card_says_how_many_images_are_here(mnist_dir, monkeypatch):
    from core.data import load_dataset, split_sizes_on_disk

    monkeypatch.setenv("DIGIT_STUDIO_DATA", str(mnist_dir))
    data = load_dataset("mnist", mnist_dir)
    sizes = (len(data.train_labels), len(data.test_labels))  # the offline subset: not the 60,000 of the full set
    assert split_sizes_on_disk("mnist", mnist_dir) == sizes
    app = open_app("pages/home.py")
    assert f"Ready: {sizes[0]:,} to train on, {sizes[1]:,} to test here" in [s.value for s in app.success]


def test_the_best_run_is_named_for_each_dataset_not_across_them():
    copy_run(BEST, created_at="2026-12-01T10:15:00+00:00")
    copy_run(OTHER, created_at="2026-11-30T09:00:00+00:00", dataset="digits",
             final={"test_accuracy": 0.9512, "test_loss": 0.2})
    app = open_app("pages/home.py")
    names = run_names(RunStore(default_runs_dir()).list_runs())
    (best,) = [caption.value.replace("\\", "") for caption in app.caption if "best finished run" in caption.value]
    assert best.startswith(f"The best finished run of each dataset: {names[BEST]}, with 99.15 % test accuracy; "
                           f"{names[OTHER]}, with 95.12 % test accuracy.")  # 95 % on the 8x8 digits was never 'worse'
