"""Predict's samples from a dataset: *Try one from the test set* (any class or a chosen one) and Explore's *Open in
Predict*, shown with the sample's true label and whether the model got it right.

Session state: predict_sample holds the sample on Predict as {"dataset", "split", "index"}; Explore hands one over in
predict_open_sample, which Predict checks and takes once. Both are checked like anything else from the browser.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from core.data import DATASETS, Dataset, DatasetUnavailable, is_available, load_dataset
from core.inference import ImagePrediction, predict_image, predict_preprocessed
from core.preprocess import InputFormat, Preprocessed
from core.store import LoadedRun
from ui.predict import InputImage, enlarged
from ui.shared import data_dir
from ui.text import escape_markdown

SAMPLE_KEY = "predict_sample"
HANDOFF_KEY = "predict_open_sample"
CLASS_KEY = "predict_sample_class"
SOURCE_KEY, TEST_SET = "predict_source", "Test set"  # the page's source tabs and the one that shows samples
ANY_CLASS = -1
SPLITS = ("test", "train")
SMALL_SIDE = 28  # px: an 8x8 digit is enlarged to at least this before preprocessing, which expects strokes


@dataclass(frozen=True)
class Sample:
    """One image of a dataset with its true label."""

    dataset: str
    split: str
    index: int
    pixels: np.ndarray  # uint8 (H, W) in the dataset's own format, 0..input_format.max_value
    input_format: InputFormat
    class_name: str

    @property
    def title(self) -> str:
        return f"{DATASETS[self.dataset].title} {self.split} image #{self.index:,}"

    @property
    def picture(self) -> np.ndarray:
        """The sample as a 0..255 picture, white ink on black, at least SMALL_SIDE px a side."""
        scaled = (self.pixels.astype(np.float32) * (255.0 / self.input_format.max_value)).astype(np.uint8)
        factor = -(-SMALL_SIDE // max(scaled.shape))
        return scaled.repeat(factor, axis=0).repeat(factor, axis=1)

    def as_input(self) -> InputImage:
        return InputImage(self.title, self.picture, digest=f"{self.dataset}/{self.split}/{self.index}")


def _loaded(name: str) -> Dataset | None:
    """The dataset when it is on this machine (load_dataset keeps one copy per process), else None."""
    try:
        return load_dataset(name, data_dir()) if is_available(name, data_dir()) else None
    except (DatasetUnavailable, OSError, ValueError):
        return None


def sample_from(request: object) -> Sample | None:
    """The sample a request names, or None when it names none that is here (any malformed request included)."""
    if not isinstance(request, dict) or request.get("dataset") not in DATASETS or request.get("split") not in SPLITS:
        return None
    data, index = _loaded(request["dataset"]), request.get("index")
    if data is None:
        return None
    test = request["split"] == "test"
    images, labels = (data.test_images, data.test_labels) if test else (data.train_images, data.train_labels)
    if type(index) is not int or not 0 <= index < len(labels):  # a bool or a float is no index
        return None
    label = int(labels[index])
    return Sample(data.name, request["split"], index, images[index].numpy(), data.input_format, data.class_names[label])


def samples_dataset(run: LoadedRun) -> str:
    """Where samples come from: the model's own dataset when it is here, else MNIST, else scikit-learn's digits."""
    own = run.meta.get("dataset")
    return next(name for name in (own, "mnist", "digits") if name in DATASETS and _loaded(name) is not None)


def new_sample(dataset: str) -> None:
    """The button's callback: a random test image of the chosen class (or of any)."""
    labels = _loaded(dataset).test_labels.numpy()
    wanted = st.session_state.get(CLASS_KEY, ANY_CLASS)
    candidates = np.flatnonzero(labels == wanted) if wanted != ANY_CLASS else np.arange(len(labels))
    index = int(np.random.default_rng().choice(candidates))
    st.session_state[SAMPLE_KEY] = {"dataset": dataset, "split": "test", "index": index}


def take_handoff() -> None:
    """A sample Explore sent with *Open in Predict*: put on the page, its tab opened; anything else is dropped."""
    request = st.session_state.pop(HANDOFF_KEY, None)
    if sample_from(request) is not None:
        st.session_state[SAMPLE_KEY] = dict(request)
        st.session_state[SOURCE_KEY] = TEST_SET


def open_in_predict(dataset: str, split: str, index: int) -> None:
    """Explore's button: hand the sample to Predict and go there."""
    st.session_state[HANDOFF_KEY] = {"dataset": dataset, "split": split, "index": int(index)}
    pages = st.session_state.get("nav_pages") or {}
    st.switch_page(pages.get("predict") or "pages/predict.py")


def test_set_tab(run: LoadedRun) -> Sample | None:
    """The class picker, the button, and the sample on the page (large, with its true label)."""
    dataset = samples_dataset(run)
    names = DATASETS[dataset].class_names
    picker, button = st.columns([2, 3], vertical_alignment="bottom")
    picker.selectbox("Class", [ANY_CLASS, *range(len(names))], key=CLASS_KEY,
                     format_func=lambda label: "Any" if label == ANY_CLASS else names[label])
    button.button("Try one from the test set", icon=":material/casino:", on_click=new_sample, args=(dataset,),
                  key="predict_try_sample", help=f"A random image of {DATASETS[dataset].title}'s test set.")
    sample = sample_from(st.session_state.get(SAMPLE_KEY))
    if sample is None:
        st.info(f"**Try one from the test set**: a random image from {escape_markdown(DATASETS[dataset].title)} with "
                "its true label, to see whether the model gets it right.", icon=":material/casino:")
        return None
    st.image(enlarged(sample.picture, 280), width=280)
    st.markdown(f"{escape_markdown(sample.title)}: true label **{escape_markdown(sample.class_name)}**")
    return sample


def read_as_given(run: LoadedRun, sample: Sample) -> bool:
    """Whether the sample is in the model's own format, so read as the test set is, without preprocessing."""
    return sample.input_format == run.input_format


def sample_prediction(run: LoadedRun, sample: Sample) -> ImagePrediction:
    """The model's answer for a sample: read as the test set is (no preprocessing) when it is in the model's own
    format, else through the preprocessing every picture gets."""
    if read_as_given(run, sample):
        return predict_preprocessed(run, Preprocessed(sample.pixels, False, None))
    return predict_image(run, sample.picture)


def verdict(run: LoadedRun, sample: Sample, prediction: ImagePrediction) -> None:
    """The sample's true label, and whether the model got it right."""
    truth = f"True label **{escape_markdown(sample.class_name)}**"
    if prediction.blank:
        st.info(f"{truth}.", icon=":material/label:")
    elif run.class_names[prediction.label] == sample.class_name:
        st.success(f"{truth}: the model got it right.", icon=":material/check_circle:")
    elif sample.class_name not in run.class_names:
        st.info(f"{truth}: a class this model was not trained on.", icon=":material/label:")
    else:
        st.warning(f"{truth}: the model got it wrong.", icon=":material/cancel:")
