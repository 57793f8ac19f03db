"""Predict: draw, upload, photograph or pick a digit and see what the model reads, why, what each layer sees, and
what every other model thinks.

Everything below the model picker is one fragment: a stroke, a tab or a toggle reruns it alone, not the frame, the
title and the list of saved runs. In it the answer comes first and the slower parts (saliency, every model, the
layer views) after, so the answer follows a stroke at once (bench/bench_stroke_latency.py).

Session state besides the widgets' predict_* keys: predict_sample and predict_open_sample (the sample shown, and the
one Explore hands over; ui.predict_samples), predict_explain and predict_uploads_seen (ui.predict_inputs).
"""

from __future__ import annotations

import streamlit as st

from core.inference import predict_image, read_number
from core.preprocess import split_digits
from core.store import LoadedRun, RunError
from ui.predict import (
    InputImage,
    ModelChoice,
    agreement,
    every_model_rows,
    every_model_table,
    load_choice,
    model_choices,
    show_prediction,
    show_reading,
    show_reasons,
    usable_runs,
    version_key,
    warm_saliency,
)
from ui.predict_collect import collect_box
from ui.predict_compare import before_and_after
from ui.predict_inputs import camera, drawing, follow_new_uploads, gallery, pick_upload, upload_notes, uploads
from ui.predict_inside import show_inside
from ui.predict_messages import blank_message, empty_message, report_problems
from ui.predict_samples import (SOURCE_KEY, TEST_SET, Sample, read_as_given, sample_prediction, take_handoff,
                                test_set_tab, verdict)
from ui.shared import run_inside_the_frame
from ui.text import escape_markdown

run_inside_the_frame()
SOURCES = ["Draw", "Upload", "Camera", TEST_SET]
DETAILS = ["Why", "Inside the network"]

st.title("Predict")
st.caption("Draw a digit, upload pictures, take a photo or try one from the test set: see what the model reads, how "
           "sure it is, which pixels decided it, what each of its layers sees, and what every other model thinks.")


def pick_model(choices: list[ModelChoice]) -> tuple[ModelChoice, LoadedRun]:
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


def answer_for(run: LoadedRun, chosen: InputImage, several: bool, model_label: str, sample: Sample | None):
    """The answer column for one picture: a number, a digit, or why there is none; returns what was predicted."""
    if several:
        answer = read_number(run, chosen.image)
        if answer.blank:
            blank_message(chosen, predict_image(run, chosen.image).refusal)  # every mark was refused, or none found
        else:
            show_reading(run, answer)
        return answer
    answer = sample_prediction(run, sample) if sample else predict_image(run, chosen.image)
    if answer.blank:
        blank_message(chosen, answer.refusal)
        return answer
    show_prediction(run, answer, model_label, test_image=sample is not None)
    if sample:
        verdict(run, sample, answer)
    else:
        collect_box(run, chosen.image, answer.label)
    if len(split_digits(chosen.image, run.input_format)) > 1:
        st.info("This looks like several digits side by side: turn on **Several digits** to read them as a number.",
                icon=":material/pin:")
    return answer


def every_model_section(choices: list[ModelChoice], chosen_first: ModelChoice, image, several: bool,
                        sample: Sample | None = None) -> None:
    """The same picture through every model, side by side, so people see where models disagree."""
    models, problems = usable_runs([chosen_first] + [other for other in choices if other.key != chosen_first.key])
    read = sample and (lambda other: sample_prediction(other, sample))
    if models and models[0][0] is chosen_first:  # a fine-tune: the model it started from, side by side
        before_and_after(choices, *models[0], image, several, read)
    st.markdown("**Every model**")
    rows = every_model_rows(models, image, several, read)
    st.markdown(agreement(rows))
    every_model_table(rows)
    for problem in problems:
        st.warning(escape_markdown(problem), icon=":material/warning:")


def details(choices: list[ModelChoice], choice: ModelChoice, run: LoadedRun, version: str, chosen: InputImage,
            answer, sample: Sample | None) -> None:
    """Why the model answered so and what every other model says, or what each of its layers sees: only the open
    tab is computed (the layer views are half a megabyte of charts)."""
    why_tab, inside_tab = st.tabs(DETAILS, key="predict_details", on_change="rerun")
    with why_tab:
        if why_tab.open:
            reasons, others = st.columns([4, 7], gap="large")  # the table needs the room more than the pictures
            with reasons:
                show_reasons(run, version, answer, as_given=sample is not None and read_as_given(run, sample))
            with others:
                every_model_section(choices, choice, chosen.image, False, sample)
    with inside_tab:
        if inside_tab.open:
            show_inside(run, version, answer.preprocessed.pixels)


@st.fragment
def workbench(choices: list[ModelChoice], choice: ModelChoice, run: LoadedRun, version: str) -> None:
    """The picture's source, the answer beside it (under it on a phone), then its reasons and the gallery."""
    left, right = st.columns([5, 6], gap="large")
    with left:
        several = st.toggle("Several digits: read a number", key="predict_several",
                            help="Digits written side by side are split left to right and read one by one.")
        draw_tab, upload_tab, camera_tab, sample_tab = st.tabs(SOURCES, key=SOURCE_KEY, on_change="rerun")
        with draw_tab:
            drawn = drawing()
        with upload_tab:
            uploaded, notes = uploads()
        with camera_tab:
            photo = camera(bool(camera_tab.open))  # the browser asks for the camera only once this is drawn
        with sample_tab:
            sample = test_set_tab(run)
    source = st.session_state.get(SOURCE_KEY) or SOURCES[0]
    inputs = {"Draw": [drawn] if drawn else [], "Upload": uploaded, "Camera": [photo] if photo else [],
              TEST_SET: [sample.as_input()] if sample else []}[source]
    items = [item for item in inputs if item.readable]  # the open tab's pictures that can be read
    with right:  # nothing between the canvas and the answer when the columns stack on a phone
        if source == "Upload":
            follow_new_uploads(items)
        chosen = (pick_upload(items) if source == "Upload" else items[0]) if items else None
        shown_sample = sample if source == TEST_SET else None
        answer = None if chosen is None else answer_for(run, chosen, several, choice.label, shown_sample)
        if chosen is None and not inputs:
            empty_message(source)
        report_problems(inputs)
        upload_notes(notes if source == "Upload" else [])
    if answer is not None and not answer.blank:
        st.divider()
        if several:
            every_model_section(choices, choice, chosen.image, several)
        else:
            details(choices, choice, run, version, chosen, answer, shown_sample)
    if source == "Upload" and len(items) > 1:
        gallery(run, items, several, chosen)


warm_saliency()
take_handoff()
model_list = model_choices()
model_choice, model_run = pick_model(model_list)
workbench(model_list, model_choice, model_run, version_key(model_choice))
