"""The Predict page's pieces: which models there are, loading them once, and showing an answer and its reasons.

The drawing canvas is imported by the page alone: its module raises when imported outside a Streamlit run.
"""

from __future__ import annotations

import hashlib
import html
import importlib
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from core.data import DATASETS
from core.images import ImageError, load_image
from core.inference import (
    DEFAULT_MODEL_DIR,
    LOW_CONFIDENCE,
    ImagePrediction,
    NumberReading,
    predict_each,
    read_number_each,
)
from core.preprocess import preprocess, working_image
from core.saliency import saliency_map
from core.store import LoadedRun, RunError, load_run_dir, read_meta
from ui.inside import SALIENCY_CAPTION, saliency_figure
from ui.shared import run_store
from ui.text import escape_markdown
from ui.train_format import HALVES, MISSING, created_time, data_words, percent, percent_ticks

SHIPPED = "shipped"  # the choice key of the model in core/default_model
PREVIEW_SIDE = 196  # px the 28x28 (or 8x8) model input is shown at: 7x for MNIST
SALIENCY_HEIGHT = 200  # px: as tall as the model input beside it in a wide window
MAX_DIGITS_SHOWN = 24  # a photo of noise can split into hundreds of "digits"
ANSWER_COLOUR = "#1f77b4"
ANSWER_REM, MIN_ANSWER_REM = 5.5, 1.75  # the big answer's type size, and the least it shrinks to for long text
ANSWER_FULL_SIZE_CHARACTERS = 3  # up to this many characters at ANSWER_REM
UNSURE_COLOUR = "#d62728"


@dataclass(frozen=True)
class ModelChoice:
    """A model the page can use: the shipped one or a saved run with weights."""

    key: str  # SHIPPED or the run's id
    label: str  # everything in one line, for the selector
    short: str  # model and where it comes from, for the table: what tells runs apart first (a narrow column)
    path: Path
    weights_file: str
    dataset: str  # its title, e.g. "MNIST (28x28)"
    test_accuracy: float | None


def _dataset_title(name: str) -> str:
    spec = DATASETS.get(name)
    return spec.title if spec else name


def _choice(key: str, path: Path, meta: dict, prefix: str = "", when: str = "") -> ModelChoice:
    accuracy = (meta.get("final") or {}).get("test_accuracy")
    accuracy = accuracy if isinstance(accuracy, (int, float)) else None
    score = f", {percent(accuracy)}" if accuracy is not None else ""
    training = " (still training)" if meta.get("status") == "running" else ""
    title = meta.get("model_title") or meta.get("model")
    collection = meta.get("collection")  # a fine-tune on a digit collection: named with it
    data = data_words(_dataset_title(meta["dataset"]), collection.get("name") if isinstance(collection, dict) else None)
    # a saved run: what it is first (a phone's selector shows the first 40 characters), its id last, as the CLI
    # takes it; in the table its start time before the id, which a narrow column cuts off
    origin = "shipped" if key == SHIPPED else " · ".join(part for part in (when, key) if part not in ("", MISSING))
    label = f"{prefix}{title} on {data}{score}{training}" + ("" if key == SHIPPED else f" · {origin}")
    short = f"{title}{training} · {origin}"
    return ModelChoice(key, label, short, path, meta["weights_file"], data, accuracy)


def model_choices() -> list[ModelChoice]:
    """The shipped model first, then every saved run that has weights, newest first."""
    choices = [_choice(SHIPPED, DEFAULT_MODEL_DIR, read_meta(DEFAULT_MODEL_DIR), "Shipped: ")]
    for info in run_store().list_runs():
        if info.meta is not None and info.has_weights:
            choices.append(_choice(info.run_id, info.path, info.meta, when=created_time(info)))
    return choices


@st.cache_resource(max_entries=32, show_spinner=False)
def _loaded_run(path: str, weights_file: str, weights_stamp: int) -> LoadedRun:
    """One shared, read-only copy per run folder and weights version: a re-saved run is loaded again."""
    return load_run_dir(Path(path))


def weights_version(choice: ModelChoice) -> int:
    """The choice's weights file's modification time (ns): what caches of its results are keyed by."""
    try:
        return (choice.path / choice.weights_file).stat().st_mtime_ns
    except OSError:
        raise RunError(f"{choice.key}: its weights file {choice.weights_file} is missing.") from None


def version_key(choice: ModelChoice) -> str:
    """One string naming the choice's folder and weights version, for caches of what its model computes."""
    return f"{choice.path}|{choice.weights_file}|{weights_version(choice)}"


def load_choice(choice: ModelChoice) -> LoadedRun:
    """The choice's model, loaded once per weights version; RunError says why it cannot be used."""
    return _loaded_run(str(choice.path), choice.weights_file, weights_version(choice))


# ---- inputs ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InputImage:
    """One picture to read, or the one sentence that says why it cannot be read."""

    name: str
    image: Image.Image | np.ndarray | None
    notices: tuple[str, ...] = ()
    error: str | None = None  # why it cannot be read at all; image is None
    blank: bool = False  # decoded, but no ink in it, or ink that is no digit (then refusal says why)
    refusal: str | None = None  # core.preprocess's sentence asking for a bigger digit (a dot, a speck, a line)
    digest: str = ""  # the content's hash: the same picture uploaded twice has the same one

    @property
    def readable(self) -> bool:
        return self.image is not None and not self.blank


@st.cache_data(max_entries=64, show_spinner=False)
def _decoded(data: bytes, name: str) -> InputImage:
    """Decode once per file content: a rerun after each stroke must not decode every upload again."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        loaded = load_image(data, name=name)
    except ImageError as error:
        return InputImage(name, None, (), str(error), digest=digest)
    image = working_image(loaded.image)
    found = preprocess(image)  # ink is found alike in any format
    return InputImage(name, image, loaded.notices, None, found.blank, found.refusal, digest)


def decoded_upload(name: str, data: bytes) -> InputImage:
    """An uploaded file decoded safely (see core.images), shrunk to the size preprocessing works at."""
    return _decoded(data, name)


# ---- pictures -------------------------------------------------------------------------------------------------------

def enlarged(values: np.ndarray, side: int = PREVIEW_SIDE) -> np.ndarray:
    """A small image (H, W) or (H, W, 3) repeated up to about `side` px: crisp pixels, no blur."""
    factor = max(1, side // max(values.shape[:2]))
    return values.repeat(factor, axis=0).repeat(factor, axis=1)


def model_input_picture(pixels: np.ndarray, max_value: int) -> np.ndarray:
    """The model's input as a uint8 greyscale picture, white ink on black as the model sees it."""
    return enlarged(np.clip(pixels.astype(np.float32) * (255.0 / max_value), 0, 255).astype(np.uint8))


def probability_figure(probabilities: np.ndarray, class_names: tuple[str, ...]) -> go.Figure:
    """Every class's probability as a bar, the answer's bar highlighted."""
    best = int(probabilities.argmax())
    colours = ["#c9d6e3"] * len(probabilities)
    colours[best] = UNSURE_COLOUR if probabilities[best] < LOW_CONFIDENCE else ANSWER_COLOUR
    labels = [html.escape(name) for name in class_names]  # plotly draws tags such as <a href> and <b> in labels
    figure = go.Figure(go.Bar(
        x=labels, y=probabilities, marker_color=colours,
        text=[percent(p, 0) if p >= 0.01 else "" for p in probabilities],
        customdata=probabilities * 100, textposition="outside", cliponaxis=False,
        hovertemplate="%{x}: %{customdata:.2f} %<extra></extra>"))  # "99.15 %", as the app writes it (not d3's "%")
    figure.update_layout(height=230, margin={"l": 0, "r": 0, "t": 18, "b": 0}, showlegend=False,
                         xaxis={"type": "category", "fixedrange": True},
                         yaxis={"range": [0, 1.05], **percent_ticks(HALVES), "fixedrange": True})
    return figure


# ---- answers --------------------------------------------------------------------------------------------------------

def answer_size_rem(text: str) -> float:
    """The big answer's type size: ANSWER_REM for a digit or a few, smaller as the text grows (a number read from a
    row of digits, Fashion-MNIST's "Ankle boot"), never under MIN_ANSWER_REM: it stays on a line or two of its
    column instead of a tower of broken words down the page."""
    return max(MIN_ANSWER_REM, min(ANSWER_REM, ANSWER_REM * ANSWER_FULL_SIZE_CHARACTERS / max(len(text), 1)))


def big_answer(text: str, headline: str, detail: str, unsure: bool) -> None:
    """The answer in large type, with what it is and how sure beside it; all three are shown as plain text."""
    colour = UNSURE_COLOUR if unsure else ANSWER_COLOUR
    answer, words = st.columns([2, 3], vertical_alignment="center")
    answer.html(f'<div class="predict-answer" style="font-size:{answer_size_rem(text):.2f}rem;font-weight:700;'
                f'line-height:1.05;color:{colour};letter-spacing:0.04em;overflow-wrap:anywhere">'
                f'{html.escape(text)}</div>')
    words.markdown(f"**{escape_markdown(headline)}**  \n{escape_markdown(detail)}")


WRITE_IT_AGAIN = "Try writing the digit larger, more upright and in one piece."
HARD_TEST_IMAGE = "A test image a model is unsure of is often one that people read two ways too."


def unsure_sentence(prediction: ImagePrediction, class_names: tuple[str, ...], advice: str = WRITE_IT_AGAIN) -> str:
    """'Not sure: 3 (48 %) or 5 (37 %). ...' as Markdown, the class names escaped, then `advice`."""
    first, second = (f"**{escape_markdown(class_names[guess.label])}** ({percent(guess.probability, 0)})"
                     for guess in prediction.top_two)
    return f"Not sure: {first} or {second}, below the {percent(LOW_CONFIDENCE, 0)} it takes to be sure. {advice}"


def show_prediction(run: LoadedRun, prediction: ImagePrediction, model_label: str, *, test_image: bool = False) -> None:
    """The predicted class large, how sure the model is, and every class's probability; when unsure, advice for the
    writer, or for a `test_image` (nobody here wrote it) what such images tend to be."""
    name = run.class_names[prediction.label]
    big_answer(name, f"The model reads {name}", f"{percent(prediction.confidence, 1)} sure · {model_label}",
               prediction.unsure)
    if prediction.unsure:
        advice = HARD_TEST_IMAGE if test_image else WRITE_IT_AGAIN
        st.warning(unsure_sentence(prediction, run.class_names, advice), icon=":material/help:")
    st.plotly_chart(probability_figure(prediction.probabilities, run.class_names), config={"displayModeBar": False},
                    key="predict_probabilities")


def show_reading(run: LoadedRun, reading: NumberReading) -> None:
    """The number read left to right, then each digit as the model saw it with its own answer."""
    big_answer(reading.text, f"The model reads {reading.text}",
               f"{len(reading.digits)} digit{'s' if len(reading.digits) > 1 else ''}, "
               f"{percent(reading.confidence, 1)} sure of {'them all' if len(reading.digits) > 1 else 'it'}",
               reading.unsure)
    if reading.unsure:
        unsure = ", ".join(f"#{i + 1}" for i, digit in enumerate(reading.digits) if digit.unsure)
        st.warning(f"The model is unsure of digit {unsure}: below {percent(LOW_CONFIDENCE, 0)} probability.",
                   icon=":material/help:")
    shown = reading.digits[:MAX_DIGITS_SHOWN]
    if len(reading.digits) > MAX_DIGITS_SHOWN:
        st.warning(f"{len(reading.digits)} separate marks were found; the first {MAX_DIGITS_SHOWN} are shown. "
                   "Is this a picture of a few digits written in one row?", icon=":material/grain:")
    per_row = 6
    for start in range(0, len(shown), per_row):
        columns = st.columns(per_row)
        for column, digit in zip(columns, shown[start:start + per_row]):
            with column:
                st.image(model_input_picture(digit.preprocessed.pixels, run.input_format.max_value), width="stretch")
                st.markdown(f"**{escape_markdown(run.class_names[digit.label])}** · {percent(digit.confidence, 0)}")


@st.cache_resource(show_spinner=False)
def warm_saliency() -> threading.Thread:
    """Import Captum (about 1.6 s) in the background once per process, when Predict first opens: imported by the
    first stroke's rerun instead, it held up the second stroke's answer until it was done (2.6 s, measured)."""
    thread = threading.Thread(target=importlib.import_module, args=("captum.attr",), daemon=True)
    thread.start()
    return thread


@st.cache_data(max_entries=64, show_spinner=False)
def cached_saliency(_run: LoadedRun, run_version: str, pixels: np.ndarray, label: int) -> np.ndarray:
    """core.saliency.saliency_map once per model version, input and class: a rerun for another reason (a tab, a
    toggle) must not pay for its 64 forward-backward passes again."""
    return saliency_map(_run, pixels, label)


def show_reasons(run: LoadedRun, run_version: str, prediction: ImagePrediction, *, as_given: bool = False) -> None:
    """What the model was given (`as_given`: a test image in the model's own format, read without preprocessing),
    and which of those pixels moved its answer most."""
    pixels, top = prediction.preprocessed.pixels, run.input_format.max_value
    size = run.input_format.size
    seen, why = st.columns(2)
    with seen:
        st.markdown(f"**Model input** {size}x{size}")
        st.image(model_input_picture(pixels, top), width="stretch")
        st.caption("The test image as its dataset holds it: the model's own format, so nothing was changed." if as_given
                   else "The ink cropped, scaled so its longer side is 20 of 28 pixels and centred by its mass, "
                   "as MNIST's digits were made." if run.input_format.style == "mnist" else
                   "The ink in scikit-learn's 8x8 style: each pixel counts the ink in a 4x4 block, 0 to 16.")
    with why:
        st.markdown(f"**Why {escape_markdown(run.class_names[prediction.label])}**: saliency")
        strength = cached_saliency(run, run_version, pixels, prediction.label)
        figure = saliency_figure(pixels, top, strength)
        figure.update_layout(margin={"l": 0, "r": 0, "t": 0, "b": 0}, height=SALIENCY_HEIGHT)  # no title: the
        figure.update_traces(showscale=False)  # heading above says it; the map gets the column's width to itself
        st.plotly_chart(figure, config={"displayModeBar": False}, key="predict_saliency")
        st.caption(SALIENCY_CAPTION)


# ---- every model --------------------------------------------------------------------------------------------------

def usable_runs(choices: list[ModelChoice]) -> tuple[list[tuple[ModelChoice, LoadedRun]], list[str]]:
    """Each choice loaded, and one sentence for each that cannot be."""
    loaded, problems = [], []
    for choice in choices:
        try:
            loaded.append((choice, load_choice(choice)))
        except RunError as error:
            problems.append(str(error))
    return loaded, problems


def every_model_rows(models: list[tuple[ModelChoice, LoadedRun]], image: Image.Image | np.ndarray,
                     several: bool, read: Callable[[LoadedRun], ImagePrediction] | None = None) -> list[dict]:
    """One table row per model: its answer and how sure it is; `read` answers for one model instead of the picture
    (a test-set sample is read as the page's answer reads it)."""
    runs = [run for _, run in models]
    if read is not None and not several:
        answers = [read(run) for run in runs]
    else:
        answers = read_number_each(runs, image) if several else predict_each(runs, image)
    rows = []
    for (choice, run), answer in zip(models, answers):
        if answer.blank:
            text, confidence = "-", None
        else:
            text = answer.text if several else run.class_names[answer.label]
            confidence = answer.confidence
        rows.append({"model": choice.short, "trained on": choice.dataset, "test accuracy": choice.test_accuracy,
                     "answer": text, "confidence": confidence})
    return rows


def every_model_frame(rows: list[dict]) -> pd.DataFrame:
    """The rows as the table shows them: accuracy and confidence in percent, which its "%.2f %%" formats write
    "99.15 %" as the pages do (the table's own "percent" format writes "99.15%")."""
    frame = pd.DataFrame(rows)
    for column in ("test accuracy", "confidence"):
        frame[column] = pd.to_numeric(frame[column]) * 100  # None (no digit found) stays empty
    return frame


EVERY_MODEL_COLUMNS = ("model", "answer", "confidence", "test accuracy", "trained on")  # the answers first: a
#                                                                                       phone shows these three
EVERY_MODEL_CONFIG = {
    "model": st.column_config.TextColumn("model", width="medium"),
    "trained on": st.column_config.TextColumn("trained on", help="Each model gets the picture in its own data's "
                                              "format: 28x28 for MNIST, 8x8 for scikit-learn's digits."),
    "test accuracy": st.column_config.NumberColumn("accuracy", format="%.2f %%", width="small",
                                                   help="On its dataset's test images."),
    "answer": st.column_config.TextColumn("answer", width="small"),
    # a number, not a bar: in a column this narrow the bars of 93 % and 100 % read as a quarter and a whole
    "confidence": st.column_config.NumberColumn("sure", format="%.1f %%", width="small",
                                                help="How sure the model is of its answer.")}


def every_model_table(rows: list[dict]) -> None:
    """Every model's answer to the picture, as a table."""
    st.dataframe(every_model_frame(rows), hide_index=True, width="stretch", column_order=EVERY_MODEL_COLUMNS,
                 column_config=EVERY_MODEL_CONFIG)


def agreement(rows: list[dict]) -> str:
    """One line of Markdown on whether the models agree (the answers in it escaped)."""
    votes = Counter(row["answer"] for row in rows if row["answer"] != "-")
    if not votes:
        return "No model found a digit."
    if len(rows) == 1:
        return "Train a model on the Train page to compare its answer with this one."
    missing = len(rows) - sum(votes.values())
    without = f" {missing} found no digit." if missing else ""
    if len(votes) == 1:
        top = escape_markdown(next(iter(votes)))
        return f"All {len(rows)} models agree: **{top}**." if not missing else \
            f"{len(rows) - missing} of {len(rows)} models read **{top}**;{without}"
    spread = ", ".join(f"{escape_markdown(answer)} ({n})" for answer, n in votes.most_common())
    return f"The models disagree: {spread}.{without}"
