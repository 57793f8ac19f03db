"""Shared fixtures: MNIST wherever this machine has it, an isolated runs folder, tiny trained runs; and a last word
on what was skipped and why."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import socket
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest

# One thread per process under test: the suite runs two workers on two cores beside a served app, torchrun workers and
# command-line processes, and every torch (OpenMP) or OpenBLAS pool with more threads than its share of the cores spins
# waiting for the others: half the suite's CPU time went there (bench/README.md, "The test suite on two workers").
# Set before anything imports torch or numpy, and inherited by every process a test starts; a developer's own wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
STARTUP_DATA = os.environ.get("DIGIT_STUDIO_DATA")  # read once, before isolated_folders points it at each tmp_path
SHARED_DATA = REPO.parent / "shared" / "data"  # the MNIST subset beside a checkout on the project's machines
LOCAL_DATA = REPO / "data"  # the app's own default, where a download goes
MNIST_HOST = ("ossci-datasets.s3.amazonaws.com", 443)  # torchvision's first MNIST mirror
PROBE_SECONDS = 3.0  # an offline machine (DNS included) must not hold the suite up
NO_MNIST = "MNIST not found (set DIGIT_STUDIO_DATA to a folder with MNIST/raw, or run once online to download it)"


@pytest.fixture(autouse=True)
def isolated_folders(tmp_path, monkeypatch):
    """No test reads or writes the developer's ./runs, ./data or ~/.cache."""
    monkeypatch.setenv("DIGIT_STUDIO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("DIGIT_STUDIO_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DIGIT_STUDIO_REDRAW_SECONDS", raising=False)  # a developer's own setting stays theirs


@pytest.fixture(scope="session", autouse=True)
def component_scan_once():
    """Streamlit looks for installed components (every installed package's metadata, parsed again and again) each
    time an AppTest first runs: 0.14 s each, half of what test_train_page.py's AppTests took (bench/README.md,
    "AppTest's component scan, evaluation in batches of 256"). The packages installed do not change while the suite
    runs, so each worker scans once."""
    from streamlit.components.v2 import manifest_scanner

    scan = manifest_scanner.scan_component_manifests
    found = functools.cache(scan)
    manifest_scanner.scan_component_manifests = lambda *args, **kwargs: list(found(*args, **kwargs))
    yield
    manifest_scanner.scan_component_manifests = scan


def mnist_candidates() -> list[Path]:
    """Where MNIST may already be, in order: $DIGIT_STUDIO_DATA as pytest started, ../shared/data, ./data."""
    return ([Path(STARTUP_DATA)] if STARTUP_DATA else []) + [SHARED_DATA, LOCAL_DATA]


def online(address: tuple[str, int] = MNIST_HOST, timeout: float = PROBE_SECONDS) -> bool:
    """Whether the download mirror answers within `timeout` seconds (name lookup included)."""
    answered = threading.Event()

    def probe() -> None:
        try:
            socket.create_connection(address, timeout=timeout).close()
            answered.set()
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)  # getaddrinfo has no timeout of its own
    thread.start()
    thread.join(timeout)
    return answered.is_set()


@functools.cache
def find_mnist() -> Path | None:
    """The first folder that holds MNIST; else a download into ./data when online; else None. Once per session (per
    worker under pytest-xdist: a lock lets one worker download while the other waits, then finds it there)."""
    from core.data import DatasetUnavailable, download_dataset, is_available

    with download_lock():
        for root in mnist_candidates():
            if is_available("mnist", root):
                return root
        if not online():
            return None
        try:
            download_dataset("mnist", LOCAL_DATA)
        except DatasetUnavailable:
            return None
        return LOCAL_DATA if is_available("mnist", LOCAL_DATA) else None


@contextlib.contextmanager
def download_lock() -> Iterator[None]:
    """Held by one test process at a time on this machine (an advisory lock on a file in the system's temp folder)."""
    with open(Path(tempfile.gettempdir()) / "digit-studio-tests-mnist.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def mnist_root() -> Path | None:
    """The folder holding MNIST (see find_mnist), or None: for fixtures that must go on without it."""
    return find_mnist()


@pytest.fixture
def mnist_dir(mnist_root) -> Path:
    """The folder holding MNIST (the subset in ../shared/data has 14,262 train and 10,000 test images); skips the
    test, saying why, when this machine has none."""
    if mnist_root is None:
        pytest.skip(NO_MNIST)
    return mnist_root


# The browser files in two shares of about equal time (bench/README.md, "The test suite on two workers"): each share
# is served by its own app, with its own Chromium and runs folder, on its own worker. A file not named joins the second.
FIRST_BROWSER_SHARE = frozenset({"test_train_browser", "test_load_browser", "test_explore_browser", "test_follow_browser",
                                 "test_network_browser", "test_home_browser", "test_predict_compare_browser"})


# The longest other files, longest first (seconds each in a full run: distributed 44, cli 41, launched_job 17,
# train_page 16, lazy_imports 16, explore_page 14, finetune 13, training 11, predict_page 8, optimizers 8, faults 7):
# they start as soon as a worker is free, and the short files fill the end, so that both workers finish together.
# In file-name order test_train_page and test_training ran last, with one core often idle for half a minute.
LONGEST_FIRST = ("test_distributed", "test_cli", "test_launched_job", "test_train_page", "test_lazy_imports",
                 "test_explore_page", "test_finetune", "test_training", "test_predict_page", "test_optimizers",
                 "test_faults")


def is_browser(item: pytest.Item) -> bool:
    return item.path.parent.name == "browser"


def xdist_group(item: pytest.Item) -> str:
    """The group pytest-xdist's --dist loadgroup keeps on one worker: a browser share, else the test's own file."""
    if not is_browser(item):
        return item.path.stem
    return "browser-1" if item.path.stem in FIRST_BROWSER_SHARE else "browser-2"


def run_order(item: pytest.Item) -> tuple[int, int]:
    """Where a test's file comes in the run: the browser shares, then the longest files, then the rest."""
    if is_browser(item):
        return 0, 0
    stem = item.path.stem
    return (1, LONGEST_FIRST.index(stem)) if stem in LONGEST_FIRST else (2, 0)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which reads the groups into the test ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """For pytest-xdist's --dist loadgroup (scripts/test.sh): the browser tests in two groups, each run in order on
    one worker that serves the app and runs Chromium once for its group; every other file a group of its own, so a
    module's fixtures (a trained tiny run) are built once, on one worker. The browser groups, the longest, are
    collected first, so that with --no-loadscope-reorder each worker starts on one and the files fill in around them,
    the longest first (LONGEST_FIRST). Browser tests are also marked `browser`."""
    items.sort(key=run_order)  # stable: each file's own order is kept
    for item in items:
        item.add_marker(pytest.mark.xdist_group(xdist_group(item)))
        if is_browser(item):
            item.add_marker(pytest.mark.browser)  # so that `-m "not browser"` runs the rest alone


def skip_reasons(reports: list) -> Counter:
    """How many tests were skipped for each reason."""
    reasons = Counter()
    for report in reports:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    return reasons


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter):
    """After pytest's short summary, one line per reason for skipping: '13 skipped: MNIST not found (...)'."""
    result = yield
    for reason, count in skip_reasons(terminalreporter.stats.get("skipped", [])).most_common():
        terminalreporter.write_line(f"{count} skipped: {reason}", yellow=True, bold=True)
    return result
