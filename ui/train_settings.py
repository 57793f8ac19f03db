"""The Train page's settings: number fields that check what is typed against core's bounds and say when a value
was not taken, and the TrainConfig they build.

Numbers are typed into text fields, not st.number_input: Streamlit's number input drops, in the browser, any value
past its limits (2**53 for whole numbers) without the server ever seeing it, so the previous value trained while the
field showed the new one. Here every typed value reaches the server, which takes it or says why not.

Session state: `train_<name>` holds each setting's taken value (numbers included), `train_<name>_typed` the text in
a number's field, `train_notes` the sentence per field about a value that was not taken.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import streamlit as st

from core.config import SETTING_BOUNDS, Bounds, TrainConfig
from core.jobs import JobRefused
from core.recipes import Recipe
from ui.jobs import job_manager, visitor_id
from ui.shared import public_demo
from ui.text import escape_markdown

CHOICE_FIELDS = ("model", "optimizer", "schedule", "loss")
SLIDER_FIELDS = ("augment_shift", "augment_rotation", "augment_scale")
NOTES = "train_notes"
REFUSED_NOW = "train_typing_refused"  # set by a refusal in this rerun's callbacks, so that Start does not start
MAX_ECHO = 40  # characters of a refused text repeated in its note
LARGE_LEARNING_RATE = 10.0  # taken, but said: the presets use 0.0005 to 0.5, and steps this long blow the loss up
PROCESSES = "train_processes"
PROCESSES_HELP = ("More than one trains the run on several processes of this machine with torch.distributed, as "
                  "`python -m core train --processes N` does; Stop still keeps the last complete epoch.")


@dataclass(frozen=True)
class NumberField:
    """A setting typed as a number: its TrainConfig name (or "limit"), label, range and what it is for."""

    name: str
    label: str
    bounds: Bounds
    help: str = ""


NUMBER_FIELDS = {field.name: field for field in (
    NumberField("epochs", "Epochs", SETTING_BOUNDS["epochs"], "Passes over the training images."),
    NumberField("batch_size", "Batch size", SETTING_BOUNDS["batch_size"],
                "Images per step; at most the number of training images."),
    NumberField("learning_rate", "Learning rate", SETTING_BOUNDS["learning_rate"], "The size of each step."),
    NumberField("momentum", "Momentum", SETTING_BOUNDS["momentum"]),
    NumberField("seed", "Seed", SETTING_BOUNDS["seed"], "The same seed and settings train the same run again."),
    NumberField("limit", "Training images (0: all)", replace(SETTING_BOUNDS["train_limit"], low=0),  # 0 means all
                "Train on the first N images only: a quick look before a full run."),
    NumberField("weight_decay", "Weight decay", SETTING_BOUNDS["weight_decay"]),
    NumberField("label_smoothing", "Label smoothing", SETTING_BOUNDS["label_smoothing"]),
)}
CONFIG_NUMBERS = tuple(name for name in NUMBER_FIELDS if name != "limit")
FIELDS = (*CHOICE_FIELDS, *CONFIG_NUMBERS, *SLIDER_FIELDS)
# The widgets of these settings take their values from the session (none has a default of its own to clash with)
KEPT_ACROSS_PAGES = ("train_dataset", "train_preset", *(f"train_{name}" for name in (*CHOICE_FIELDS, *SLIDER_FIELDS)),
                     PROCESSES)


def keep_settings_across_pages() -> None:
    """Streamlit forgets a widget's value after a run that did not draw it (a visit to another page), and the Train
    page then started again from digits and its preset: written back on every run, the settings stay as they were."""
    for key in KEPT_ACROSS_PAGES:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def shown(value: float) -> str:
    """A number as its field shows it, in a form that reads back as the same number."""
    return str(value) if isinstance(value, int) else format(value, ".10g")


THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?\Z")  # 1,000 and 12,345.5: commas between groups of three


def typed_number(text: str, whole: bool) -> float:
    """The number in a field's text ("1,000", " 0.5 ", "1e-4", and "0,5" with a decimal comma, as much of Europe
    writes it: read as 0.5, never as 5); ValueError when there is none."""
    cleaned = text.strip().replace("_", "")
    if THOUSANDS.match(cleaned):
        cleaned = cleaned.replace(",", "")
    elif cleaned.count(",") == 1 and "." not in cleaned:
        cleaned = cleaned.replace(",", ".")
    if whole:
        try:
            return int(cleaned)
        except ValueError:
            pass
    value = float(cleaned)
    return int(value) if whole and value.is_integer() else value


def take_typed(field: NumberField) -> None:
    """A field's callback: take the typed number if it is in range, else put the field back and say why.

    Once the text is taken (or put back) there is nothing left to do: Start may have taken it already in the same
    rerun (take_pending_typing), and taking it twice would drop the note about a refused value."""
    typed, previous = st.session_state[f"train_{field.name}_typed"], st.session_state[f"train_{field.name}"]
    if typed == shown(previous):
        return
    try:
        value = typed_number(typed, field.bounds.whole)
        problem = field.bounds.problem(value)
    except (ValueError, OverflowError):
        value, problem = None, "is not a number"
    notes = st.session_state.setdefault(NOTES, {})
    if not st.session_state.get(REFUSED_NOW):  # notes of earlier reruns are about typing since redone: the newest
        for other in [name for name in notes if name != field.name]:  # alone stays (several fields typed in one
            notes.pop(other)  # rerun, then Start, keep a note each)
    if problem is None:
        st.session_state[f"train_{field.name}"] = value
        st.session_state[f"train_{field.name}_typed"] = shown(value)
        notes.pop(field.name, None)
        return
    st.session_state[REFUSED_NOW] = True
    echo = typed.strip() if len(typed.strip()) <= MAX_ECHO else typed.strip()[:MAX_ECHO] + "…"
    st.session_state[f"train_{field.name}_typed"] = shown(previous)
    notes[field.name] = (f"{field.label}: {echo} {problem}; still {shown(previous)}." if echo else
                         f"{field.label}: the field was left empty; still {shown(previous)}.")


def take_pending_typing() -> bool:
    """Take every field's typed text its own callback has not taken yet; False when a value typed for this rerun was
    refused (its note says why). Streamlit runs one rerun's callbacks in no set order: Start's may come before or
    after a field's."""
    for name, field in NUMBER_FIELDS.items():
        typed = st.session_state.get(f"train_{name}_typed")
        if typed is not None and typed != shown(st.session_state[f"train_{name}"]):
            take_typed(field)
    return not st.session_state.get(REFUSED_NOW, False)


def number_field(container, name: str) -> None:
    """The text field of one number setting, its range in its help (notes_for says what it did not take)."""
    st.session_state.pop(REFUSED_NOW, None)  # this rerun's callbacks are over: a refusal holds back its own click only
    field = NUMBER_FIELDS[name]
    if f"train_{name}_typed" not in st.session_state:  # Streamlit forgets a field that was not drawn last run
        st.session_state[f"train_{name}_typed"] = shown(st.session_state[f"train_{name}"])
    help_text = f"{field.help} {field.bounds.describe().capitalize()}.".strip()
    container.text_input(field.label, key=f"train_{name}_typed", on_change=take_typed, args=(field,), help=help_text)


def notes_for(*names: str) -> None:
    """Under a row of fields, a note for each value typed there that was not taken, and a caution for a learning rate
    that is taken but far too large to train (an experiment a student may well want to see fail)."""
    for name in names:
        if note := st.session_state.get(NOTES, {}).get(name):
            st.warning(escape_markdown(note), icon=":material/undo:")
        rate = st.session_state.get("train_learning_rate")
        if name == "learning_rate" and isinstance(rate, (int, float)) and rate > LARGE_LEARNING_RATE:
            st.info(f"A learning rate of {shown(rate)} is far above the usual 0.0001 to 1: expect the loss to blow up "
                    "within a few steps (the run then ends as diverged).", icon=":material/warning:")


def fill_widgets(config: TrainConfig) -> None:
    """Put a config's values into the setting fields (a preset), forgetting notes about earlier typing."""
    for name in FIELDS:  # whole numbers stay int, the rest float: 10 and 10.0 read differently in a field
        value = getattr(config, name)
        whole = name in NUMBER_FIELDS and NUMBER_FIELDS[name].bounds.whole
        st.session_state[f"train_{name}"] = int(value) if whole else float(value) if name not in CHOICE_FIELDS \
            else value
    st.session_state["train_limit"] = config.train_limit or 0
    for name in NUMBER_FIELDS:
        st.session_state[f"train_{name}_typed"] = shown(st.session_state[f"train_{name}"])
    st.session_state[NOTES] = {}


def config_from_widgets(base: TrainConfig, dataset: str, data_root: str) -> TrainConfig:
    """The settings the fields hold now, on top of a preset's (or the defaults)."""
    values = {name: st.session_state[f"train_{name}"] for name in FIELDS}
    return replace(base, **values, dataset=dataset, data_dir=data_root,
                   train_limit=int(st.session_state["train_limit"]) or None)


def settings_problem(config: TrainConfig) -> str | None:
    """The sentence that says why these settings cannot train here (validation, or a public demo's caps), or None."""
    from core.data import DatasetUnavailable, load_dataset
    from core.training import ConfigError, validate

    try:
        data = load_dataset(config.dataset, config.data_dir)
        validate(config, data)
    except (ConfigError, DatasetUnavailable) as error:
        return str(error)
    policy, available = public_demo(), len(data.train_labels)
    return policy.training_problem(config.epochs, min(config.train_limit or available, available)) if policy else None


def start(chosen: Callable[[], tuple[TrainConfig, Recipe | None]]) -> None:
    """The Start button's callback: the run the fields describe at the click (`chosen` reads them), not the one they
    described when the button was last drawn. A value typed just before the click can reach the server in the
    click's own rerun, or in one the click cut short before it drew the button again: a config bound to the button
    then trained the value before it (seen: 1,000 epochs trained after 5,000 was typed and Enter pressed). Checked
    again here: a public demo's caps hold whatever the browser sends."""
    if not take_pending_typing():
        return  # a refused value's note says what the field holds now; nothing starts from a value not typed
    config, recipe = chosen()
    if problem := settings_problem(config):
        st.session_state["train_refused"] = problem
        return
    policy = public_demo()
    try:
        st.session_state["train_job"] = job_manager().submit(
            config, recipe, owner=visitor_id(), owner_limit=policy.queued_per_visitor if policy else None,
            processes=chosen_processes())
        st.session_state["train_refused"] = None
        st.session_state["train_scroll"] = "live"  # the live panel comes into view, wherever the page was scrolled
    except JobRefused as error:
        st.session_state["train_refused"] = str(error)


def processes_setting() -> None:
    """*Advanced*: how many processes train the run (1 to the cores here); a public demo trains on one."""
    if public_demo():
        return
    from ui.train import usable_cores

    cores = usable_cores()
    with st.expander("Advanced: training processes", key="train_processes_box"):  # keyed: see pages/train.py
        st.selectbox("Processes", range(1, cores + 1), key=PROCESSES, help=PROCESSES_HELP)
        if chosen_processes() > 1:
            st.caption(f"{chosen_processes()} processes each train on their share of every batch and average their "
                       "gradients (PyTorch's DistributedDataParallel, started as torchrun would). The batch size stays "
                       "the whole batch, so the settings train as on one process. With as many processes as cores, "
                       "small models often train slower: they spend their steps talking (bench/README.md).")


def chosen_processes() -> int:
    """The processes the Advanced section asks for: 1 unless it was opened and changed (always 1 on a public demo)."""
    chosen = st.session_state.get(PROCESSES, 1)
    return 1 if public_demo() or not isinstance(chosen, int) else max(1, chosen)


def refusal_to_show() -> str | None:
    """The last Start's refusal, kept while its cause lasts: the rerun right after the click (the running job's
    first save) must not hide it."""
    refused = st.session_state.get("train_refused")
    policy = public_demo()
    if refused and job_manager().refusal(visitor_id(), policy.queued_per_visitor if policy else None) is None:
        refused = st.session_state["train_refused"] = None
    return refused
