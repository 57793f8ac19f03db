"""Predict's messages about its pictures: what to do when there is none, why one has no answer (no ink, or ink that is
no digit), and what could not be read or was changed on the way."""

from __future__ import annotations

import streamlit as st

from ui.predict import InputImage
from ui.predict_inputs import DRAWING
from ui.text import escape_markdown


def empty_message(source: str) -> None:
    if source == "Draw":
        st.info("**Draw a digit** in the black square: the answer appears as soon as you lift the mouse or your "
                "finger.", icon=":material/draw:")
    elif source == "Upload":
        st.info("**Upload pictures** of digits: drawings, scans, photos of ink on paper or screenshots.",
                icon=":material/upload:")
    elif source == "Camera":
        st.info("**Take a photo** of a digit written large in dark ink on white paper.", icon=":material/photo_camera:")


def blank_message(item: InputImage, refusal: str | None) -> None:
    """Why there is no answer: the ink is no digit (the sentence asking for a bigger one), or there is no ink."""
    if refusal:
        prefix = "" if item.name == DRAWING else f"{escape_markdown(item.name)}: "
        st.info(prefix + escape_markdown(refusal), icon=":material/draw:")
    elif item.name == DRAWING:
        empty_message("Draw")
    else:
        st.warning(f"No digit found in {escape_markdown(item.name)}: it looks blank (one flat colour, or ink too faint "
                   "to tell from the background).", icon=":material/image_not_supported:")


def report_problems(items: list[InputImage]) -> None:
    """One clear message per picture that cannot be read, and what was done to the others."""
    for item in items:
        if item.error:
            st.error(escape_markdown(item.error), icon=":material/broken_image:")
        for notice in item.notices:
            st.info(escape_markdown(notice), icon=":material/info:")
        if item.blank:
            blank_message(item, item.refusal)
