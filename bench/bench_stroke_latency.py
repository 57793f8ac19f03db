"""From the mouse being released to the answer changing on the Predict page, in Chromium: the page before and after.

    python bench/bench_stroke_latency.py [--before 096b64a] [--cycles 10] [--slow-send]

Two servers run side by side: "after" serves this working tree; "before" serves a temporary worktree of HEAD whose
pages/predict.py and ui/predict.py are put back as they were at commit --before (everything else, core included,
is the same code); with --slow-send, a third serves HEAD without the page's quick send. Each cycle, on each app
in turn: reset the canvas (unmeasured), draw a first stroke (an answer appears), then a second stroke that changes
it (the first stroke of a 4 reads 6, the 4 reads 4; a 1 then a bar across it reads 7): 2 measured strokes per cycle, 20 with the default 10 cycles, per app. A stroke is timed in
the page from the `mouseup` event (a capturing listener) to the first DOM mutation after it that changes the big
answer's text (a MutationObserver): the browser's own clock, so Playwright's round trips are not counted; paint
follows within a frame. A stroke whose answer never changes within --timeout seconds counts as a miss. A first
cycle on each app warms it up (imports, caches) and is not counted. "Server CPU" is the streamlit process's CPU time
over a cycle's two strokes (their reruns, to the end), halved: what one stroke costs the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.browser.conftest import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    SHARED_DATA,
    cpu_seconds,
    serve_app,
    stop_app,
    wait_for_app,
)
from tests.drawn_digits import strokes_in  # noqa: E402

PAGE_FILES = ("pages/predict.py", "ui/predict.py")
GOAL_MS = 300.0
BOX = (25, 25, 255, 255)  # where the digits are drawn on the 280x280 canvas
BAR = [(25 + 0.3 * 230, 25 + 0.5 * 230), (25 + 0.8 * 230, 25 + 0.5 * 230)]  # across a 1's middle: reads 7
PAIRS = [strokes_in(4, BOX), strokes_in(1, BOX) + [BAR]]  # two strokes each; the answer changes at each
WATCH = """
() => {
  const answerText = () => {
    const found = [document, ...[...document.querySelectorAll('*')].filter(e => e.shadowRoot).map(e => e.shadowRoot)]
      .map(root => root.querySelector('.predict-answer')).find(Boolean);
    return found ? found.textContent : null;
  };
  window.__stroke = {up: null, changed: null, before: answerText()};
  document.addEventListener('mouseup', () => {
    window.__stroke = {up: performance.now(), changed: null, before: answerText()};
  }, {capture: true});
  new MutationObserver(() => {
    const stroke = window.__stroke;
    if (stroke.up !== null && stroke.changed === null && answerText() !== stroke.before) {
      stroke.changed = performance.now();
      stroke.text = answerText();
    }
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}
"""


def worktree(scratch: Path, name: str) -> Path:
    """A worktree of HEAD in `scratch`."""
    tree = scratch / name
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), "HEAD"], cwd=REPO, check=True,
                   capture_output=True)
    return tree


def before_tree(commit: str, scratch: Path) -> Path:
    """A worktree of HEAD with the Predict page's two files as they were at `commit`."""
    tree = worktree(scratch, "predict-before")
    for name in PAGE_FILES:
        old = subprocess.run(["git", "show", f"{commit}:{name}"], cwd=REPO, check=True, capture_output=True).stdout
        (tree / name).write_bytes(old)
    return tree


def slow_send_tree(scratch: Path) -> Path:
    """A worktree of HEAD whose canvas keeps its own 200 ms send debounce (the quick-send script left out)."""
    tree = worktree(scratch, "predict-slow-send")
    inputs = tree / "ui" / "predict_inputs.py"
    text = inputs.read_text()
    call = "    st.html(QUICK_SEND, unsafe_allow_javascript=True)\n"
    if call not in text:
        raise SystemExit("ui/predict_inputs.py no longer draws QUICK_SEND this way: update --slow-send")
    inputs.write_text(text.replace(call, ""))
    return tree


def serve(tree: Path, runs: Path) -> object:
    """The app of `tree` served by `streamlit run` (serve_app runs it from this repository: point it at the tree)."""
    import tests.browser.conftest as browser_conftest

    saved = browser_conftest.REPO
    browser_conftest.REPO = tree  # serve_app's working folder: the tree whose app is served
    try:
        return serve_app(runs, SHARED_DATA, output=subprocess.DEVNULL)
    finally:
        browser_conftest.REPO = saved


def open_predict(context, url: str):
    page = context.new_page()
    page.goto(f"{url}/predict")
    wait_for_app(page, timeout=90_000)
    page.locator("canvas.upper-canvas").first.wait_for(timeout=90_000)
    page.evaluate(WATCH)
    return page


def stroke(page, points, timeout: float) -> float | None:
    """Draw one stroke; ms from its mouseup to the answer's text changing (None: it did not change in time)."""
    box = page.locator("canvas.upper-canvas").first.bounding_box()
    page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x, box["y"] + y, steps=6)
    page.mouse.up()
    try:
        page.wait_for_function("() => window.__stroke.changed !== null", timeout=timeout * 1000, polling=20)
    except Exception:  # Playwright's TimeoutError: the answer never changed
        return None
    return page.evaluate("() => window.__stroke.changed - window.__stroke.up")


def reset(page) -> None:
    page.locator(".dc-toolbar button[title='Reset canvas & history']").click()
    page.wait_for_function("() => !document.querySelector('.predict-answer')", timeout=30_000)
    wait_for_app(page)
    time.sleep(0.3)  # the rest of the page settles before the next stroke is timed
    page.evaluate("() => { window.__stroke = {up: null, changed: null, before: null}; }")


def settle(page) -> None:
    wait_for_app(page)
    time.sleep(0.3)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="096b64a", help="commit whose Predict page is the baseline")
    parser.add_argument("--cycles", type=int, default=10, help="reset + 2 strokes each, per app")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds a stroke's answer may take")
    parser.add_argument("--slow-send", action="store_true",
                        help="also time the page without its quick send (the canvas's own 200 ms debounce)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as scratch_name, sync_playwright() as playwright:
        scratch = Path(scratch_name)
        trees = {"before": before_tree(args.before, scratch), "after": REPO}
        if args.slow_send:
            trees["after, canvas's debounce"] = slow_send_tree(scratch)
        servers = {}
        try:
            servers = {name: serve(tree, scratch / f"runs-{index}") for index, (name, tree) in enumerate(trees.items())}
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            pages = {name: open_predict(context, served.url) for name, served in servers.items()}
            timings: dict[str, list[float]] = {name: [] for name in pages}
            misses = {name: 0 for name in pages}
            server_cpu = {name: 0.0 for name in pages}
            for cycle in range(-1, args.cycles):  # cycle -1 warms both up (first imports, caches) and is not counted
                for name, page in pages.items():
                    page.bring_to_front()
                    used = cpu_seconds(servers[name].process.pid)
                    for points in PAIRS[cycle % len(PAIRS)]:
                        elapsed = stroke(page, points, args.timeout)
                        if cycle >= 0 and elapsed is None:
                            misses[name] += 1
                        elif cycle >= 0:
                            timings[name].append(elapsed)
                        settle(page)
                    if cycle >= 0:
                        server_cpu[name] += cpu_seconds(servers[name].process.pid) - used  # the 2 strokes' reruns
                    reset(page)
                if cycle < 0:
                    continue
                print(f"  cycle {cycle + 1}: " + ", ".join(f"{name} {' '.join(f'{t:.0f}' for t in times[-2:])} ms"
                                                          for name, times in timings.items()), flush=True)
            browser.close()
        finally:
            for served in servers.values():
                stop_app(served)
            for tree in trees.values():
                if tree != REPO:
                    subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True)
    print(f"Chromium, {os.cpu_count()} cores, {args.cycles} cycles x 2 strokes per app; ms from mouseup to the "
          f"answer's text changing")
    for name, values in timings.items():
        if values:
            print(f"  {name:<26} median {statistics.median(values):6.0f} ms, p90 {percentile(values, 0.9):6.0f} ms, "
                  f"min {min(values):5.0f}, max {max(values):5.0f}; {len(values)} strokes, {misses[name]} missed; "
                  f"server CPU {server_cpu[name] * 1000 / (2 * args.cycles):.0f} ms a stroke")
    if timings["after"]:
        met = statistics.median(timings["after"]) < GOAL_MS
        print(f"goal: median under {GOAL_MS:.0f} ms after: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
