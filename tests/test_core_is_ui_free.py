import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_no_core_module_imports_streamlit():
    modules = sorted(p.stem for p in (REPO / "core").glob("*.py") if p.stem != "__main__")
    code = ("import importlib, sys\n"
            f"for name in {modules!r}: importlib.import_module('core.' + name)\n"
            "print('streamlit' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
