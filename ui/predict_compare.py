"""Predict's before and after: a fine-tuned model's answer beside the answer of the model it started from, on the
same picture, so people see what fine-tuning on their handwriting changed."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st
from PIL import Image

from core.config import DEFAULT_MODEL_RUN
from core.inference import ImagePrediction
from core.store import LoadedRun, RunError
from ui.predict import SHIPPED, ModelChoice, every_model_rows, load_choice
from ui.text import escape_markdown
from ui.train_format import percent


def start_choice(choices: list[ModelChoice], run: LoadedRun) -> ModelChoice | None:
    """The model `run` was fine-tuned from, among the page's choices (None for a run trained from scratch)."""
    start = run.meta.get("from_run")
    if not isinstance(start, str):
        return None
    key = SHIPPED if start == DEFAULT_MODEL_RUN else start
    return next((choice for choice in choices if choice.key == key), None)


def before_and_after(choices: list[ModelChoice], choice: ModelChoice, run: LoadedRun, image: Image.Image,
                     several: bool, read: Callable[[LoadedRun], ImagePrediction] | None = None) -> None:
    """For a fine-tune: what the model it started from reads in the picture, and what it reads now."""
    start = start_choice(choices, run)
    if start is None:
        if isinstance(run.meta.get("from_run"), str):
            st.caption("This model was fine-tuned from a run that is no longer saved: nothing to compare it with.")
        return
    try:
        start_run = load_choice(start)
    except RunError as error:
        st.caption(f"The model it was fine-tuned from cannot be loaded: {escape_markdown(error)}")
        return
    before, after = every_model_rows([(start, start_run), (choice, run)], image, several, read)
    collection = run.meta.get("collection")
    name = collection.get("name") if isinstance(collection, dict) else None
    on = f" on {escape_markdown(name)}" if isinstance(name, str) else ""
    st.markdown(f"**Before and after fine-tuning{on}**")
    was, now = st.columns(2)
    was.metric(f"Before: {start.short}", answer_words(before), help="The model this one was fine-tuned from.")
    now.metric("After: this fine-tune", answer_words(after),
               delta="same answer" if before["answer"] == after["answer"] else "changed its answer",
               delta_color="off" if before["answer"] == after["answer"] else "normal", delta_arrow="off")


def answer_words(row: dict) -> str:
    """"3 (97 %)", or a dash when the model found no digit."""
    if row["answer"] == "-":
        return "no digit"
    return f"{row['answer']} ({percent(row['confidence'], 0)})"
