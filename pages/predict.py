"""Predict: draw, upload or photograph digits and see what every model thinks, and why."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
from streamlit_drawable_canvas import st_canvas

from core.inference import predict_image, read_number
from core.preprocess import split_digits
from core.store import RunError
from ui.predict import (
    InputImage,
    ModelChoice,
    agreement,
    decoded_upload,
    every_model_rows,
    load_choice,
    model_choices,
    show_prediction,
    show_reading,
    show_reasons,
    usable_runs,
)
from ui.shared import run_inside_the_frame
from ui.text import escape_markdown

run_inside_the_frame()
CANVAS_SIDE = 280
UPLOAD_TYPES = ["png", "jpg", "jpeg", "bmp", "gif", "webp"]
SOURCES = ["Draw", "Upload", "Camera"]
DRAWING = "your drawing"

st.title("Predict")
st.caption("Draw a digit, upload pictures or take a photo: see what the model reads, how sure it is, which pixels "
           "decided it, and what every other model thinks.")


def pick_model(choices: list[ModelChoice]):
    """The model selector; falls back to the shipped model when the chosen run cannot be loaded."""
    labels = {choice.key: choice.label for choice in choices}
    key = st.selectbox("Model", list(labels), format_func=labels.get, key="predict_model",
                       help="The model shipped with the app, or any run you saved on the Train page.")
    choice = next(c for c in choices if c.key == key)
    try:
        return choice, load_choice(choice)
    except RunError as error:
        st.error(f"{escape_markdown(error)} Showing the shipped model instead.", icon=":material/error:")
        return choices[0], load_choice(choices[0])


def drawing() -> InputImage | None:
    """The canvas and its brush; the drawing as RGBA pixels once something is drawn."""
    brush = st.session_state.get("predict_brush", 18)
    st.space("small")  # room for the canvas's floating toolbar (upload, undo, redo, edit, clear)
    result = st_canvas(stroke_width=brush, stroke_color="#FFFFFF", background_color="#000000",
                       height=CANVAS_SIDE, width=CANVAS_SIDE, drawing_mode="freedraw", update_streamlit=True,
                       return_image_data=True, key="predict_canvas")
    st.slider("Brush width", 4, 40, key="predict_brush", value=18,
              help="Thin or thick, the strokes are brought to MNIST's width before the model sees them.")
    objects = (result.json_data or {}).get("objects") or []
    pixels = result.image_data if objects else None
    return None if pixels is None else InputImage(DRAWING, np.asarray(pixels))


def uploads() -> list[InputImage]:
    """Every uploaded file, decoded or with the sentence that says why it cannot be."""
    files = st.file_uploader("Pictures of digits", type=UPLOAD_TYPES, accept_multiple_files=True,
                             key="predict_uploads", help="PNG, JPEG, BMP, GIF or WebP, up to 5 MB each: drawings, "
                                                         "scans, photos of ink on paper, screenshots.")
    return [decoded_upload(file.name, file.getvalue()) for file in files or []]


def camera() -> InputImage | None:
    photo = st.camera_input("Photograph a digit written on paper", key="predict_camera")
    return None if photo is None else decoded_upload("the photo", photo.getvalue())


def blank_message(item: InputImage) -> None:
    if item.name == DRAWING:
        st.info("**Draw a digit**: that is too little ink to be one yet.", icon=":material/draw:")
    else:
        st.warning(f"No digit found in {escape_markdown(item.name)}: it looks blank (one flat colour, or ink too faint to tell "
                   "from the background).", icon=":material/image_not_supported:")


def report_problems(items: list[InputImage]) -> None:
    """One clear message per file that cannot be read, and what was done to the others."""
    for item in items:
        if item.error:
            st.error(escape_markdown(item.error), icon=":material/broken_image:")
        for notice in item.notices:
            st.info(escape_markdown(notice), icon=":material/info:")
        if item.blank:
            blank_message(item)


def pick_item(items: list[InputImage]) -> InputImage:
    """The picture to explain: the only one, or the one chosen among the uploads."""
    if len(items) == 1:
        return items[0]
    index = st.selectbox("Explain", range(len(items)), format_func=lambda i: items[i].name, key="predict_explain",
                         help="Which picture to show the answer and reasons for; all are in the gallery below.")
    return items[index]


def empty_message(source: str) -> None:
    if source == "Draw":
        st.info("**Draw a digit** in the black square: the answer appears as soon as you lift the mouse.",
                icon=":material/draw:")
    elif source == "Upload":
        st.info("**Upload pictures** of digits: drawings, scans, photos of ink on paper or screenshots.",
                icon=":material/upload:")
    else:
        st.info("**Take a photo** of a digit written large in dark ink on white paper.", icon=":material/photo_camera:")


def answer_for(run, chosen: InputImage, several: bool, model_label: str):
    """The answer column for one picture: a number, a digit, or why there is none; returns what was predicted."""
    if several:
        answer = read_number(run, chosen.image)
        if answer.blank:
            blank_message(chosen)
        else:
            show_reading(run, answer)
        return answer
    answer = predict_image(run, chosen.image)
    if answer.blank:
        blank_message(chosen)
        return answer
    show_prediction(run, answer, model_label)
    if len(split_digits(chosen.image, run.input_format)) > 1:
        st.info("This looks like several digits side by side: turn on **Several digits** to read them as a number.",
                icon=":material/pin:")
    return answer


def every_model_section(choices: list[ModelChoice], chosen_first: ModelChoice, image, several: bool) -> None:
    """The same picture through every model, side by side, so people see where models disagree."""
    st.markdown("**Every model**")
    models, problems = usable_runs([chosen_first] + [other for other in choices if other.key != chosen_first.key])
    rows = every_model_rows(models, image, several)
    st.markdown(agreement(rows))
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
        "model": st.column_config.TextColumn("model", width="medium"),
        "trained on": st.column_config.TextColumn("trained on", help="Each model gets the picture in its own "
                                                  "data's format: 28x28 for MNIST, 8x8 for scikit-learn's digits."),
        "test accuracy": st.column_config.NumberColumn("accuracy", format="percent", width="small",
                                                       help="On its dataset's test images."),
        "answer": st.column_config.TextColumn("answer", width="small"),
        "confidence": st.column_config.ProgressColumn("confidence", format="percent", min_value=0.0, max_value=1.0,
                                                      width="small")})
    for problem in problems:
        st.warning(escape_markdown(problem), icon=":material/warning:")


def gallery(run, items: list[InputImage], several: bool) -> None:
    """Every readable upload with its answer."""
    st.subheader("All your pictures")
    per_row = 5
    for start in range(0, len(items), per_row):
        for column, item in zip(st.columns(per_row), items[start:start + per_row]):
            with column.container(border=True):
                st.image(item.image, width="stretch")
                answer = read_number(run, item.image) if several else predict_image(run, item.image)
                name = escape_markdown(item.name)
                if answer.blank:
                    st.markdown(f"{name}: **no digit**")
                else:
                    text = answer.text if several else run.class_names[answer.label]
                    st.markdown(f"{name}: **{escape_markdown(text)}** · {answer.confidence:.0%}")


choices = model_choices()
choice, run = pick_model(choices)
left, right = st.columns([5, 6], gap="large")
with left:
    draw_tab, upload_tab, camera_tab = st.tabs(SOURCES, key="predict_source", on_change="rerun")
    with draw_tab:
        drawn = drawing()
    with upload_tab:
        uploaded = uploads()
        report_problems(uploaded)
    with camera_tab:
        photo = camera()
        report_problems([photo] if photo else [])
    several = st.toggle("Several digits: read a number", key="predict_several",
                        help="Digits written side by side are split left to right and read one by one.")

source = st.session_state.get("predict_source") or SOURCES[0]
inputs = {"Draw": [drawn] if drawn else [], "Upload": uploaded, "Camera": [photo] if photo else []}[source]
items = [item for item in inputs if item.readable]  # the open tab's pictures that can be read
with right:
    chosen = pick_item(items) if items else None
    if chosen is None:
        empty_message(source)
    answer = None if chosen is None else answer_for(run, chosen, several, choice.label)

if answer is not None and not answer.blank:
    st.divider()
    if several:
        every_model_section(choices, choice, chosen.image, several)
    else:
        reasons, others = st.columns([4, 7], gap="large")  # the table needs the room more than the pictures
        with reasons:
            show_reasons(run, answer)
        with others:
            every_model_section(choices, choice, chosen.image, several)
if source == "Upload" and len(items) > 1:
    gallery(run, items, several)
