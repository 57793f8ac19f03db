"""Teach it your handwriting: keep a drawn or uploaded digit, with its right label, in a digit collection.

Collections are ImageFolder folders under the data folder (core.collection); Explore lists them and the command
line fine-tunes on them. Session state: predict_collection (the collection's name), predict_wrong (the label
picked after "Wrong?"), predict_collected (the last save's sentence, shown once), predict_collection_last (the
collection last kept into), predict_collection_for (the model the box's name was suggested for), predict_kept
(the pictures kept this session: (digest, collection) -> label, so a second click does not save the same picture twice).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

import streamlit as st

from core.collection import NAME_PATTERN, CollectionError, collection_samples, collections_root, save_sample
from core.data import DIGIT_NAMES
from core.store import LoadedRun
from ui.shared import data_dir
from ui.text import escape_markdown
from ui.train_format import count

DEFAULT_COLLECTION = "my-digits"
MESSAGE_KEY = "predict_collected"
NAME_KEY = "predict_collection"
LAST_KEY = "predict_collection_last"
SUGGESTED_FOR_KEY = "predict_collection_for"
KEPT_KEY = "predict_kept"


def picture_digest(image: Any) -> str:
    """What identifies a picture across reruns: its pixels and shape (a PIL image or an array alike)."""
    pixels = np.ascontiguousarray(np.asarray(image))
    return hashlib.sha1(repr((pixels.shape, pixels.dtype.str)).encode() + pixels.tobytes()).hexdigest()


def kept_label(digest: str, name: str) -> int | None:
    """The label the picture of `digest` was already kept under in collection `name` this session, or None."""
    return st.session_state.get(KEPT_KEY, {}).get((digest, name.strip()))


def collectable(run: LoadedRun) -> bool:
    """Collections hold digits: a model of other classes (Fashion-MNIST) has no right digit to keep."""
    return tuple(run.class_names) == DIGIT_NAMES


def keep(image: Any, label: int) -> None:
    """Save the original picture under `label`; the outcome is one sentence shown under the buttons."""
    name = (st.session_state.get(NAME_KEY) or "").strip()
    digest = picture_digest(image)
    if (already := kept_label(digest, name)) is not None:  # a double click, or a click from a page drawn before the save
        st.session_state[MESSAGE_KEY] = ("info", f"This picture is already kept as a {already} in "
                                                 f"{escape_markdown(name)}.")
        return
    root = collections_root(data_dir())
    try:
        save_sample(root, name, image, label)
        kept = len(collection_samples(root, name))
    except (CollectionError, OSError) as error:  # a bad name, a picture out of bounds, a full or read-only disk
        st.session_state[MESSAGE_KEY] = ("error", escape_markdown(error))
        return
    remember_name()
    st.session_state.setdefault(KEPT_KEY, {})[(digest, name)] = label
    st.session_state[MESSAGE_KEY] = ("success", f"Kept as a {label} in {escape_markdown(name)}: "
                                                f"{count(kept, 'image')} there now. Explore shows them; Train's "
                                                "*Fine-tune on your handwriting* teaches a model to read them.")


def keep_wrong(image: Any) -> None:
    label = st.session_state.get("predict_wrong")
    st.session_state["predict_wrong"] = None  # ready for the next picture
    if label is not None:
        keep(image, int(label))


def tuned_on(run: LoadedRun) -> str | None:
    """The collection a fine-tune was trained on (its folder's name, as its metadata says), or None."""
    collection = run.meta.get("collection")
    name = collection.get("name") if isinstance(collection, dict) else None
    return name if isinstance(name, str) and NAME_PATTERN.match(name) else None


def suggest_collection(run: LoadedRun) -> None:
    """The box's name when another model is chosen: the collection that model was fine-tuned on, else the one last
    used (kept into or typed), else my-digits. For the same model, the name last used stays."""
    if st.session_state.get(SUGGESTED_FOR_KEY) == run.run_id:
        if NAME_KEY not in st.session_state:  # the box was gone for a while (no picture): Streamlit forgot it
            st.session_state[NAME_KEY] = st.session_state.get(LAST_KEY) or tuned_on(run) or DEFAULT_COLLECTION
        return
    st.session_state[SUGGESTED_FOR_KEY] = run.run_id
    st.session_state[NAME_KEY] = tuned_on(run) or st.session_state.get(LAST_KEY) or DEFAULT_COLLECTION


def remember_name() -> None:
    if NAME_PATTERN.match(name := (st.session_state.get(NAME_KEY) or "").strip()):  # a refused name is not kept
        st.session_state[LAST_KEY] = name


def collect_box(run: LoadedRun, image: Any, predicted: int) -> None:
    """*Right, keep it* and *Wrong? It's a ...* under an answer, for models of the ten digits."""
    if not collectable(run):
        return
    with st.container(border=True):
        st.markdown("**Teach it your handwriting**: keep this picture with its right label.")
        suggest_collection(run)
        st.text_input("Collection", key=NAME_KEY, max_chars=64, on_change=remember_name,
                      help="A folder of your digits under the data folder (collections/NAME/0 ... 9): "
                           "letters, digits, '-' and '_'.")
        already = kept_label(picture_digest(image), st.session_state.get(NAME_KEY) or "")
        st.button(f"Right, keep it as {predicted}", key="predict_keep_right", icon=":material/check:",
                  on_click=keep, args=(image, predicted), disabled=already is not None)
        st.segmented_control("Wrong? It's a ...", [d for d in range(10) if d != predicted], key="predict_wrong",
                             on_change=keep_wrong, args=(image,),  # nine short choices: one row on a laptop
                             disabled=already is not None)
        if shown := st.session_state.pop(MESSAGE_KEY, None):
            kind, text = shown
            {"error": st.error, "info": st.info}.get(kind, st.success)(text)
        elif already is not None:
            st.caption(f"Kept as a {already} in this collection: draw or pick another picture to keep the next one.")
