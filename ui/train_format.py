"""How the pages write numbers, durations, run names and rows of runs tables: one way each, everywhere.

Percentages read "99.12 %", durations "3 min 05 s", and a run is named by what it is, "Digits CNN · digits ·
200 epochs · 2 Dec 14:05", rather than by its folder's id. A missing value is a dash, never "None".
"""

from __future__ import annotations

import math
import numbers
import re
from collections import Counter
from datetime import datetime
from typing import Any, Iterable, Sequence

from core.store import RunInfo

MISSING = "–"
RUNNING = "training (see above)"
STATUS_WORDS = {"done": "finished", "interrupted": "interrupted (the app stopped)"}
SHORT_DATASET_NAMES = {"digits": "digits", "mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
_GLUED_PERCENT = re.compile(r"(\d)%")


def is_number(value: object) -> bool:
    """A finite real number, numpy's included (not a bool): something a table or a metric can show as a number."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def percent(fraction: object, digits: int = 2) -> str:
    """0.99123 -> "99.12 %"; anything that is not a number -> a dash."""
    return f"{fraction * 100:.{digits}f} %" if is_number(fraction) else MISSING  # type: ignore[operator]


HALVES, QUARTERS = (0, 0.5, 1), (0, 0.25, 0.5, 0.75, 1)  # fractions where percentage axes are ticked


def percent_ticks(fractions: Sequence[float], unit: float = 1.0) -> dict[str, list]:
    """A plotly axis's (or colour bar's) ticks at these fractions, on an axis counted in `unit` (100: in percent),
    labelled as the app writes percentages ("50 %"; plotly's own percent format writes "50%")."""
    return {"tickvals": [fraction * unit for fraction in fractions], "ticktext": [percent(f, 0) for f in fractions]}


def signed_percent(fraction: float, digits: int = 2) -> str:
    """-0.0378 -> "-3.78 %", 0.0033 -> "+0.33 %"."""
    return f"{fraction * 100:+.{digits}f} %"


def spaced_percents(text: str) -> str:
    """Our own sentences written "98.67%" (the recipes' notes) as the pages write percentages: "98.67 %"."""
    return _GLUED_PERCENT.sub(r"\1 %", text)


def duration(seconds: object) -> str:
    """42 -> "42 s", 185 -> "3 min 05 s", 3725 -> "1 h 02 min"; not a number -> a dash."""
    if not is_number(seconds):
        return MISSING
    whole = max(0, int(round(seconds)))  # type: ignore[arg-type]
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def count(number: int, word: str) -> str:
    """1 -> "1 epoch", 2 -> "2 epochs", 1200 -> "1,200 epochs"."""
    return f"{number:,} {word}{'' if number == 1 else 's'}"


def created_time(info: RunInfo) -> str:
    """When the run started, in this machine's time: "2 Dec 14:05"; a dash when its metadata has no time."""
    try:
        created = datetime.fromisoformat(str(info.get("created_at"))).astimezone()
    except ValueError:
        return MISSING
    return f"{created.day} {created:%b %H:%M}"


def run_name(info: RunInfo) -> str:
    """A run as people name it: "Digits CNN · digits · 200 epochs · 2 Dec 14:05" (a damaged run: its id)."""
    if info.meta is None:
        return f"{info.run_id} (damaged)"
    model = info.get("model_title") or info.get("model") or "unknown model"
    collection = info.get("collection")
    dataset = data_words(str(info.get("dataset")), collection.get("name") if isinstance(collection, dict) else None)
    epochs = info.get("epochs_completed")
    trained = count(epochs, "epoch") if isinstance(epochs, int) and info.status != "running" else "training"
    return f"{model} · {dataset} · {trained} · {created_time(info)}"


def data_words(dataset: str, folder: object = None) -> str:
    """What a run trained on, short: "MNIST", "MNIST + mine" (mixed with the image folder mine), "mine" (alone)."""
    name = SHORT_DATASET_NAMES.get(dataset, dataset)
    if not isinstance(folder, str) or not folder:
        return name
    return folder if dataset == "folder" else f"{name} + {folder}"


def run_names(runs: Iterable[RunInfo]) -> dict[str, str]:
    """Each run's name, made unique: runs named alike (started the same minute) get the end of their id added."""
    runs = list(runs)
    names = {info.run_id: run_name(info) for info in runs}
    repeated = Counter(names.values())
    return {run_id: f"{name} ({run_id[-4:]})" if repeated[name] > 1 else name for run_id, name in names.items()}


def run_row(info: RunInfo, name: str, running: str = RUNNING) -> dict[str, Any]:
    """One row of the runs table, every value as text (a missing one a dash: a table shows None as "None"); a run
    still training has the status `running` (the Train page's own table: its live panel above follows the run)."""
    final = info.get("final") or {}
    training = info.status == "running"  # the table is drawn once; the live panel above follows the run
    epochs, planned = info.get("epochs_completed"), (info.get("settings") or {}).get("epochs")
    epochs_text = MISSING if training or not is_number(epochs) else \
        f"{epochs:,} of {planned:,}" if is_number(planned) and planned != epochs else f"{epochs:,}"
    loss = final.get("test_loss")
    return {"Run": name, "Status": running if training else STATUS_WORDS.get(info.status, info.status),
            "Epochs": epochs_text, "Test accuracy": MISSING if training else percent(final.get("test_accuracy")),
            "Test loss": f"{loss:.4f}" if is_number(loss) and not training else MISSING,
            "Training time": MISSING if training or not info.meta else duration(info.get("train_seconds")),
            "Run id": info.run_id, "Problem": info.error or ""}
