"""The home page must not pay torch's ~2 s import, nor numpy's, scipy's and pandas' (~0.8 s together, more on a busy
machine, all before the first page shows): the modules it imports load them only when a function needs them."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TORCH_FREE = ["core.config", "core.data", "core.store", "core.recipes", "ui.shared"]


def _imported_modules(code: str, env: dict[str, str] | None = None) -> list[str]:
    """What `code`, run by a fresh interpreter in the repository, printed (names of modules it found imported)."""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def _check_torch_free(modules: list[str]) -> None:
    code = ("import importlib, sys\n"
            f"for name in {modules!r}: importlib.import_module(name)\n"
            "print(*sorted(name for name in ('torch', 'torchvision') if name in sys.modules))")
    assert _imported_modules(code) == [], f"importing {modules} imported torch"


def test_modules_the_home_page_needs_do_not_import_torch():
    _check_torch_free(TORCH_FREE)


def test_every_project_module_the_home_page_imports_is_torch_free():
    imported = set()
    for script in (REPO / "streamlit_app.py", REPO / "pages" / "home.py"):  # the frame runs before every page
        tree = ast.parse(script.read_text())
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    project = sorted(name for name in imported if name.split(".")[0] in ("core", "ui"))
    assert project, "the home page imports no project module: this test no longer looks at anything"
    _check_torch_free(project)


def test_torch_still_loads_when_a_function_needs_it():
    code = ("import sys\n"
            "from core.data import load_dataset\n"
            "before = 'torch' in sys.modules\n"
            "data = load_dataset('digits')\n"
            "print(before, type(data.train_images).__module__, 'sklearn' in sys.modules)")
    assert _imported_modules(code) == ["False", "torch", "False"]  # the digits come without scikit-learn's imports


def test_the_home_page_runs_without_importing_torch():
    code = ("import sys\n"
            "from streamlit.testing.v1 import AppTest\n"
            "app = AppTest.from_file('pages/home.py', default_timeout=60).run()\n"
            "assert not app.exception, app.exception\n"
            "print(*sorted(name for name in ('torch', 'torchvision') if name in sys.modules))")
    assert _imported_modules(code) == [], "the home page imported torch: its first visit pays for the import"


HEAVY = ("numpy", "pandas", "pyarrow", "scipy", "torch", "torchvision")  # what Streamlit's own first page does without


def test_a_first_visit_with_no_runs_imports_no_numeric_library(tmp_path):
    code = ("import sys\n"
            "from streamlit.testing.v1 import AppTest\n"
            "for script in ('streamlit_app.py', 'pages/home.py'):\n"
            "    app = AppTest.from_file(script, default_timeout=60).run()\n"
            "    assert not app.exception, app.exception\n"
            "    assert app.title[0].value == 'Digit Studio', [title.value for title in app.title]\n"
            f"print(*sorted(name for name in {HEAVY!r} if name in sys.modules))")
    env = {**os.environ, "DIGIT_STUDIO_RUNS": str(tmp_path / "runs")}  # no runs yet: no table, so no pandas
    assert _imported_modules(code, env) == [], "the first visit paid for numeric imports the home page does not use"


def test_the_modules_the_frame_and_home_page_import_are_numpy_free():
    code = ("import sys\n"
            "import core.data, core.formats, core.recipes, core.store, ui.jobs, ui.shared\n"
            f"print(*sorted(name for name in {HEAVY!r} if name in sys.modules))")
    assert _imported_modules(code) == []


def test_a_training_process_does_not_import_scipy(tmp_path, mnist_dir):
    """`python -m core train` on MNIST records a run without preprocessing drawings: scipy (a quarter second) stays
    out, through the whole command (its settings, the training and the save), not only its modules. (scikit-learn's
    digits bring scipy with scikit-learn itself.)"""
    arguments = ["train", "--model", "mlp", "--dataset", "mnist", "--data-dir", str(mnist_dir), "--epochs", "1",
                 "--train-limit", "256", "--runs-dir", str(tmp_path)]
    code = ("import io, sys\n"
            "from core.cli import main\n"
            f"code = main({arguments!r}, out=io.StringIO())\n"
            "print(code, *sorted(name for name in ('scipy', 'core.preprocess') if name in sys.modules))")
    assert _imported_modules(code) == ["0"], "the training path imported scipy through core.preprocess"


# `python -m core` with core.cli's main replaced by a report of the process as the command finds it
AS_A_COMMAND_FINDS_IT = """
import gc, json, runpy, sys
import core.cli
core.cli.main = lambda: print(json.dumps({"collecting": gc.isenabled(), "kept_out": gc.get_freeze_count(),
                                          "torch": "torch" in sys.modules})) or 0
sys.argv = ["core", *sys.argv[1:]]
runpy.run_module("core", run_name="__main__")
"""


def _as_a_command_finds_it(*argv: str) -> dict:
    done = subprocess.run([sys.executable, "-c", AS_A_COMMAND_FINDS_IT, *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_command_that_needs_torch_finds_it_imported_outside_the_collector_which_still_runs():
    for argv in (["train", "--epochs", "3"], ["predict", "digit.png"]):
        found = _as_a_command_finds_it(*argv)
        assert found["torch"] and found["collecting"]
        assert found["kept_out"] > 100_000  # torch's import made that many objects; none is collected again


def test_a_command_line_that_does_not_parse_is_answered_without_torch():
    found = _as_a_command_finds_it("train", "--lr", "0")  # main reports the error: one line, exit 2 (test_cli)
    assert found == {"collecting": True, "kept_out": 0, "torch": False}


def test_a_command_without_torch_does_not_import_it():
    found = _as_a_command_finds_it("runs")
    assert found == {"collecting": True, "kept_out": 0, "torch": False}
