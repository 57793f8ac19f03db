"""Home and Train list every run even when some runs' meta.json are malformed (issue 13, item 4)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.inference import DEFAULT_MODEL_DIR
from core.store import default_runs_dir

PAGES = Path(__file__).resolve().parents[1] / "pages"
GOOD_RUN = "20261123-100624-good-run"
MALFORMED = {  # run id -> (field, value): the values the issue found breaking the lists
    "pid-too-large": ("pid", 2**70), "integer-created-at": ("created_at", 1700000000),
    "text-test-accuracy": ("final", {"test_accuracy": "0.99"}), "text-train-seconds": ("train_seconds", "12.5"),
}


@pytest.fixture
def runs_folder() -> Path:
    """The runs folder the pages read ($DIGIT_STUDIO_RUNS, isolated by conftest): one good run, four malformed."""
    root = default_runs_dir()
    shutil.copytree(DEFAULT_MODEL_DIR, root / GOOD_RUN)
    for run_id, (field, value) in MALFORMED.items():
        folder = shutil.copytree(DEFAULT_MODEL_DIR, root / run_id)
        meta = json.loads((folder / "meta.json").read_text())
        meta.update({field: value, "status": "running"})  # "running" makes listing ask whether the pid lives
        (folder / "meta.json").write_text(json.dumps(meta))
    return root


def listed_runs(app: AppTest) -> dict[str, dict]:
    """Rows by run id; the Train page's table (written for people: "Run id", "finished", "99.15 %") read as Home's."""
    (table,) = [table.value for table in app.dataframe if {"run", "Run id"} & set(table.value.columns)]
    if "Run id" in table.columns:
        table = table.rename(columns={"Run id": "run", "Status": "status", "Problem": "problem"})
        table["status"] = table["status"].replace("finished", "done")
        table["test accuracy"] = [float(text.rstrip(" %")) / 100 if text[0].isdigit() else None
                                  for text in table["Test accuracy"]]
    return {row["run"]: row for row in table.to_dict("records")}


@pytest.mark.parametrize("page", ["home.py", "train.py"])
def test_the_page_lists_the_good_run_beside_malformed_ones(runs_folder, page):
    app = AppTest.from_file(str(PAGES / page), default_timeout=120)
    app.run()
    assert not app.exception, app.exception
    rows = listed_runs(app)
    assert rows[GOOD_RUN]["status"] == "done" and rows[GOOD_RUN]["test accuracy"] == pytest.approx(0.9915)
    for run_id, (field, _) in MALFORMED.items():
        assert rows[run_id]["status"] == "damaged"
        problem = rows[run_id].get("problem", rows[run_id].get("error"))
        assert f"its {field}" in problem, problem
