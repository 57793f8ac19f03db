"""The Explore page's sample grid: one composed clickable image vs 100 st.image calls, and the page's own redraw.

    python bench/bench_explore.py [--data-dir ../shared/data] [--rounds 9]

Both variants run as tiny Streamlit scripts in AppTest (the script run and the serialisation of every element,
as the server does them), interleaved A B A B, a different page of MNIST each run; the figure is the median.
A: ui.charts.image_grid + clickable_grid_figure shown by one st.plotly_chart (what the Explore page does).
B: the same 100 samples, upscaled alike, by 100 st.image calls in 10 st.columns (the baseline).
C: the whole Explore page (every section, data cached) redrawn after the page number changes, as a person would.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SETUP = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
import numpy as np
import streamlit as st
from core.data import load_dataset
data = load_dataset("mnist")
page = st.session_state.get("page", 0)
st.session_state.page = page + 1
shown = np.arange(page * 100, page * 100 + 100) % len(data.train_labels)
images, labels = data.train_images.numpy()[shown], data.train_labels.numpy()[shown]
"""

COMPOSED = SETUP + """
from ui.charts import clickable_grid_figure, grid_cell_size, image_grid
mosaic = image_grid(images, [str(l) for l in labels], 10)
figure = clickable_grid_figure(mosaic, 10, 100, grid_cell_size((28, 28), 2), shown, [f"#{i}" for i in shown], width=520)
st.plotly_chart(figure, key="grid", on_select=lambda: None, selection_mode="points", width="content")
"""

SEPARATE = SETUP + """
columns = st.columns(10)
for position, (image, label) in enumerate(zip(images, labels)):
    columns[position % 10].image(image.repeat(2, 0).repeat(2, 1), caption=str(label))
"""


def timed_run(app) -> float:
    started = time.perf_counter()
    app.run()
    assert not app.exception, app.exception[0].value
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    os.environ["DIGIT_STUDIO_DATA"] = args.data_dir
    from streamlit.testing.v1 import AppTest

    folder = Path(tempfile.mkdtemp())
    apps = {}
    for name, code in (("A", COMPOSED), ("B", SEPARATE)):
        (folder / f"{name}.py").write_text(code)
        apps[name] = AppTest.from_file(str(folder / f"{name}.py"), default_timeout=120)
        timed_run(apps[name])  # warm: imports, dataset load
    times: dict[str, list[float]] = {"A": [], "B": []}
    for _ in range(args.rounds):
        for name in ("A", "B"):
            times[name].append(timed_run(apps[name]))
    page = AppTest.from_file(str(REPO / "pages" / "explore.py"), default_timeout=300)
    timed_run(page)
    page.selectbox(key="explore_dataset").set_value("mnist")
    timed_run(page)
    redraws = []
    for number in range(2, 2 + args.rounds):
        page.number_input(key="explore_page").set_value(number)
        redraws.append(timed_run(page))
    a, b, c = (statistics.median(values) * 1000 for values in (times["A"], times["B"], redraws))
    print(f"A composed grid, one st.plotly_chart: {a:.0f} ms (median of {args.rounds})")
    print(f"B 100 st.image calls:                 {b:.0f} ms")
    print(f"B / A: {b / a:.1f}x")
    print(f"C whole Explore page redraw on MNIST after a page change: {c:.0f} ms (median of {args.rounds})")
    print(f"load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
