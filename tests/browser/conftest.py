"""Real-browser fixtures: the app served by `streamlit run` on a free port, driven by Debian's Chromium."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeout

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"  # the benchmarks' default; tests get MNIST from the mnist_root fixture
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"  # the browser a person uses: the benchmarks time pages in it
# The tests drive the same Blink in Debian's headless shell (Playwright's own default for headless runs): the full
# browser's headless mode draws a window nobody sees, which cost the suite's browser tests 327 busy CPU s against
# the shell's 303 (same tests, same machine, one run each).
TEST_BROWSER = "/usr/bin/chromium-headless-shell"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited early: {process.stdout.read() if process.stdout else ''}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("streamlit did not answer its health check in time")


@pytest.fixture(scope="session")
def app_folders(tmp_path_factory, mnist_root) -> dict[str, Path]:
    """The runs folder the served app uses (shared by the browser tests), and its data folder: the one holding MNIST
    (tests/conftest.py finds it), else an empty one, where tests that need MNIST skip through the mnist_dir fixture."""
    data = mnist_root if mnist_root is not None else tmp_path_factory.mktemp("browser-data")
    return {"runs": tmp_path_factory.mktemp("browser-runs"), "data": data}


@pytest.fixture(scope="session")
def app_url(app_server) -> str:
    """The served app's address."""
    return app_server.url


class Served:
    """The app served by `streamlit run`: its address and its process."""

    def __init__(self, url: str, process: subprocess.Popen) -> None:
        self.url, self.process = url, process


def serve_app(runs_dir: Path, data_dir: Path, output: int = subprocess.PIPE,
              script: str = "streamlit_app.py", settings: dict[str, str] | None = None,
              address: str | None = "127.0.0.1") -> Served:
    """`streamlit run streamlit_app.py` on a free local port with these folders, once it answers its health check.

    `output` is where the server's log goes: a pipe (read if it exits early), or DEVNULL for runs too long for a
    pipe nobody reads. `script` (from the repository root) serves another page, as a benchmark does; `settings`
    are more environment variables for the server; `address` None leaves it to .streamlit/config.toml.
    """
    port = free_port()
    inherited = {name: value for name, value in os.environ.items() if name != "DIGIT_STUDIO_REDRAW_SECONDS"}
    env = {**inherited, "DIGIT_STUDIO_RUNS": str(runs_dir), "DIGIT_STUDIO_DATA": str(data_dir),
           "XDG_CACHE_HOME": str(runs_dir.with_name(f"{runs_dir.name}-cache")), **(settings or {})}
    where = ["--server.address", address] if address else []
    process = subprocess.Popen([sys.executable, "-m", "streamlit", "run", script, "--server.headless", "true",
                                "--server.port", str(port), *where],
                               cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)
    served = Served(f"http://{address or 'localhost'}:{port}", process)
    try:
        wait_healthy(served.url, process)
    except BaseException:
        stop_app(served)
        raise
    return served


def stop_app(served: Served) -> None:
    served.process.terminate()
    try:
        served.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        served.process.kill()


def cpu_seconds(pid: int | str) -> float:
    """User + system CPU time a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="session")
def app_server(app_folders):
    """Start the app once for all browser tests; stop it at the end."""
    served = serve_app(app_folders["runs"], app_folders["data"])
    try:
        yield served
    finally:
        stop_app(served)


@pytest.fixture(scope="session")
def browser():
    if not Path(TEST_BROWSER).exists():
        pytest.fail("Chromium's headless shell is missing: run the README's test command (scripts/test.sh), which "
                    "installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=TEST_BROWSER, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


VIEWPORT = {"width": 1400, "height": 1000}
PHONE = {"width": 390, "height": 844}


class KeptTab:
    """One tab a worker's tests share, each visiting its pages afresh: Chromium draws a page in a tab it has already
    loaded the app in for about half the CPU of a new tab (1.1 vs 2.5 CPU s on this machine)."""

    def __init__(self, browser) -> None:
        self.browser, self.context, self.tab = browser, None, None

    def open(self):
        """The tab at the app's default size (a new one on first use, or if a test closed it)."""
        if self.tab is None or self.tab.is_closed():
            self.close()
            self.context = self.browser.new_context(viewport=VIEWPORT)
            self.tab = self.context.new_page()
        self.tab.set_viewport_size(VIEWPORT)
        return self.tab

    def leave(self) -> None:
        """Off the app: its session ends, so nothing of it keeps redrawing into the next test. A tab that cannot
        leave (hung, crashed) is closed: the next test gets a new one rather than this one's trouble."""
        if self.tab is None or self.tab.is_closed():
            return
        try:
            self.tab.goto("about:blank", timeout=15_000)
        except PlaywrightError:
            self.close()

    def close(self) -> None:
        if self.context is not None:
            try:
                self.context.close()
            except PlaywrightError:
                pass  # already gone with its browser
        self.context, self.tab = None, None


@pytest.fixture(scope="session")
def kept_tab(browser):
    kept = KeptTab(browser)
    yield kept
    kept.close()


@pytest.fixture(scope="session")
def served_app(app_url, kept_tab):
    """The app after one session has opened its home page, as people start (the `streamlit run` command opens it).

    A first visit straight to a page is tested on its own server (test_home_browser).
    """
    tab = kept_tab.open()
    tab.goto(app_url)
    wait_for_app(tab)
    tab.get_by_text("Digit Studio").first.wait_for()
    kept_tab.leave()
    return app_url


@pytest.fixture
def page(request, browser, kept_tab, served_app):
    """A tab at the app's default size on no page (each test opens its own): the worker's kept tab. Tests marked
    fresh_page get a browser session of their own: they leave something in the tab that outlives a visit (an init
    script, a request listener), or must see every request the app makes (a shared tab answers some from its cache)."""
    if request.node.get_closest_marker("fresh_page"):
        context = browser.new_context(viewport=VIEWPORT)
        yield context.new_page()
        context.close()
        return
    yield kept_tab.open()
    kept_tab.leave()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed browser test leaves a screenshot of its tab (failed-<test>.png), taken before the tab moves on: what
    a flaky wait saw is otherwise lost with the CI run."""
    report = yield
    tab = item.funcargs.get("page") if report.when == "call" and report.failed else None
    if tab is not None and not tab.is_closed():
        try:
            screenshot(tab, "failed-" + re.sub(r"[^\w.-]", "_", item.name))
        except PlaywrightError:
            pass
    return report


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot for people to look at; returns its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def metric_lines(page, metrics, most: int = 2, settle_s: float = 5.0) -> int:
    """How many lines the figures lie on (each within the screen), read again for up to `settle_s` while they take
    more than `most`: a resized page lays them out anew a moment later."""
    deadline = time.monotonic() + settle_s
    while True:
        boxes = [metrics.nth(i).bounding_box() for i in range(metrics.count())]
        lines = len({round(box["y"]) for box in boxes})
        if lines <= most or time.monotonic() > deadline:
            break
        page.wait_for_timeout(200)
    assert all(box["x"] + box["width"] <= page.viewport_size["width"] + 1 for box in boxes)
    return lines


def wait_for_app(page, timeout: float = 30_000) -> None:
    """Wait until Streamlit has finished running the page's script."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " && document.querySelector('[data-testid=\"stMain\"]')", timeout=timeout)


def assert_no_error(page, expected_errors: int = 0) -> None:
    """No exception box anywhere on the page, and exactly `expected_errors` error alerts (st.error)."""
    exceptions, errors = page.locator('[data-testid="stException"]'), page.locator('[data-testid="stAlertContentError"]')
    assert exceptions.count() == 0, exceptions.first.inner_text()
    assert errors.count() == expected_errors, errors.all_inner_texts()


def settled_box(locator, tries: int = 40) -> dict:
    """The element's box once two reads 0.25 s apart agree: a rerun that moves the element moves the click, and one
    that replaces it (a page reruns once more after a run ends) leaves no box for a moment."""
    box = None
    for _ in range(tries):
        again = locator.bounding_box()
        if again is not None and again == box:
            return box
        box = again
        time.sleep(0.25)
    raise AssertionError(f"{locator} did not settle in {tries / 4:.0f} s (last box {box})")


def settled_on_screen(locator, tries: int = 5) -> dict:
    """The element's settled box once it is scrolled into the window (the reruns that replace it may scroll away)."""
    for _ in range(tries):
        try:
            locator.scroll_into_view_if_needed(timeout=10_000)
            box = settled_box(locator)
        except (PlaywrightError, AssertionError):
            continue
        viewport = locator.page.viewport_size
        if box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"]:
            return box
    raise AssertionError(f"{locator} did not stay on screen")


@pytest.fixture
def new_tab(browser):
    """Open more tabs (each its own browser session); all are closed after the test, passed or failed."""
    contexts = []

    def open_tab():
        context = browser.new_context(viewport=VIEWPORT)
        contexts.append(context)
        return context.new_page()

    yield open_tab
    for context in contexts:
        context.close()


IDLE_CONFIRM_SECONDS = 1.5  # longer than a live redraw's tick: a queued job takes a stopped one's place within one


def pick(page, label: str, option: str | re.Pattern, timeout: float = 60.0) -> None:
    """Open the select box labelled `label` and click `option` in its list. A rerun that redraws the box can close
    its list before the option is clicked (seen under load: the list never showed): opened again until it does."""
    box = page.get_by_test_id("stSelectbox").filter(has_text=label).first
    item = page.get_by_role("option", name=option, exact=isinstance(option, str))
    deadline = time.monotonic() + timeout
    while True:
        box.click()
        try:
            item.click(timeout=5_000)
            return
        except PlaywrightTimeout:
            if time.monotonic() > deadline:
                raise
            page.keyboard.press("Escape")  # closes a list left open on other options, so the next click opens it


def stop_everything(tab, names: str = "^(Stop|Cancel)$", timeout: float = 90.0, first_wait: float = 8.0) -> int:
    """Press Stop (or Cancel) until no job is left running (or queued); returns how many presses landed.

    The live panel redraws every second, and a stopped job's place is taken at once by the queued one, so a
    button found a moment ago may be gone: each press is retried on a fresh lookup instead of waiting on it.
    `first_wait` (s): how long a button may take to appear before the first press (8 s after a press), unless the
    Train page says sooner that nothing is left.
    """
    button = tab.get_by_role("button", name=re.compile(names)).first
    deadline, presses = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        if not button_comes(tab, button, first_wait if presses == 0 else 8.0):
            return presses
        try:
            button.click(timeout=3_000)
            presses += 1
        except PlaywrightTimeout:
            continue
        time.sleep(0.5)
    screenshot(tab, "stop-everything-timed-out")
    raise AssertionError(f"a button named {names} was still there after {timeout:.0f} s")


def button_comes(tab, button, seconds: float) -> bool:
    """Whether `button` shows within `seconds`; False sooner when the Train page's Start button (not Queue: no job
    is running or waiting) has shown with no such button for IDLE_CONFIRM_SECONDS."""
    idle = tab.get_by_role("button", name="Start training")
    deadline, idle_since = time.monotonic() + seconds, None
    while time.monotonic() < deadline:
        if button.is_visible():
            return True
        if idle.is_visible():
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since >= IDLE_CONFIRM_SECONDS:
                return False
        else:
            idle_since = None
        time.sleep(0.1)
    return False


@pytest.fixture
def no_training_left(kept_tab, page, app_url):
    """After the test, stop whatever it left training or queued, so later tests get the CPU: from the test's tab
    (torn down after this), or the kept tab, reopened, if the test closed it."""
    yield
    tab = kept_tab.open() if page.is_closed() else page
    tab.set_viewport_size(VIEWPORT)
    tab.goto(f"{app_url}/train")
    wait_for_app(tab)
    stop_everything(tab, first_wait=2.5)  # the page has run whole: a job running or queued shows its button soon
