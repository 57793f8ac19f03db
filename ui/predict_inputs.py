"""Predict's inputs: the canvas (pen, eraser, clear, an answer as soon as the mouse or finger is up), uploads (each
picture once, the one to explain, the gallery of them all), and the camera, asked for only while its tab is open."""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.inference import predict_image, read_number
from core.store import LoadedRun
from ui.predict import InputImage, decoded_upload
from ui.text import escape_markdown
from ui.train_format import percent

CANVAS_SIDE = 280
INK, BACKGROUND = "#FFFFFF", "#000000"  # white on black, as MNIST: the eraser draws in the background's colour
PEN, ERASER = "Pen", "Eraser"
TOOL_ICONS = {PEN: ":material/edit:", ERASER: ":material/ink_eraser:"}
UPLOAD_TYPES = ["png", "jpg", "jpeg", "bmp", "gif", "webp"]
DRAWING = "your drawing"
TILE_SIDE = 140  # px: a gallery picture; five to a row on a wide screen, one a row on a phone (not a screen wide)
CANVAS_KEY = "predict_canvas"
CLEARS_KEY = "predict_canvas_clears"  # how often Clear was pressed: each press draws a new, empty canvas
EXPLAIN_KEY = "predict_explain"  # the explained upload's digest: the picker's value, set by a new upload or a tile
SEEN_KEY = "predict_uploads_seen"  # the digests of the uploads of the last run, to tell which ones are new

# streamlit-drawable-canvas 0.13.0 sends a finished stroke 200 ms after the mouse is released (a debounce, `Bc = 200`
# in its bundle), two thirds of the 300 ms an answer may take. Its toolbar's send button ("Update the app with this
# drawing") sends at once and cancels the pending send, so the page presses it right after the canvas has taken the
# stroke (a timeout: after the canvas's own mouse-up handler and the microtask that records the stroke). Should a
# later version drop that button, nothing is pressed and the canvas's own send still comes. No data in it.
QUICK_SEND = """<script>
(() => {
  if (window.digitStudioQuickSend) return;  // one listener per page, however often this element is drawn again
  window.digitStudioQuickSend = true;
  const SEND = 'button[title="Update the app with this drawing"]';
  let pressed = null;
  const onCanvas = (event) => event.composedPath().find((node) => node.classList?.contains("upper-canvas"));
  document.addEventListener("pointerdown", (event) => { pressed = onCanvas(event) || null; }, true);
  document.addEventListener("pointerup", () => {
    const canvas = pressed;
    pressed = null;
    if (!canvas) return;
    setTimeout(() => {
      let node = canvas;
      while (node && !node.querySelector?.(SEND)) node = node.parentNode || node.host;
      node?.querySelector(SEND)?.click();
    }, 0);
  }, true);
})();
</script>"""


def canvas_key() -> str:
    """The canvas's key: a new one after each Clear, so that the browser draws a new, empty canvas."""
    clears = st.session_state.get(CLEARS_KEY, 0)
    return f"{CANVAS_KEY}_{clears}" if clears else CANVAS_KEY


def clear_canvas() -> None:
    st.session_state[CLEARS_KEY] = st.session_state.get(CLEARS_KEY, 0) + 1


def drawing() -> InputImage | None:
    """The canvas with its pen or eraser and brush width; the drawing as RGBA pixels once something is drawn."""
    from streamlit_drawable_canvas import st_canvas  # raises when imported outside a Streamlit run

    tools = st.container(horizontal=True, vertical_alignment="center")  # above the canvas: on a phone the answer
    tool = tools.segmented_control("Tool", [PEN, ERASER], default=PEN, required=True, key="predict_tool",  # comes
                                   format_func=lambda name: f"{TOOL_ICONS[name]} {name}",  # right under it
                                   label_visibility="collapsed",
                                   help="The eraser paints in the background's black. Undo and redo are in the "
                                        "canvas's toolbar.")
    tools.button("Clear", icon=":material/delete:", key="predict_clear", on_click=clear_canvas,
                 help="Start again on an empty canvas.")
    brush = st.slider("Brush width", 4, 40, key="predict_brush", value=18,
                      help="Thin or thick, the strokes are brought to MNIST's width before the model sees them.")
    st.space("small")  # room for the canvas's floating toolbar (send, undo, redo, edit, clear)
    width, colour = (brush, INK) if tool == PEN else (brush + 8, BACKGROUND)  # wider: no grey rim left round ink
    result = st_canvas(stroke_width=width, stroke_color=colour,
                       background_color=BACKGROUND, height=CANVAS_SIDE, width=CANVAS_SIDE, drawing_mode="freedraw",
                       update_streamlit=True, return_image_data=True, key=canvas_key())
    st.html(QUICK_SEND, unsafe_allow_javascript=True)
    objects = (result.json_data or {}).get("objects") or []
    pixels = result.image_data if objects else None
    return None if pixels is None else InputImage(DRAWING, np.asarray(pixels))


# ---- uploads ------------------------------------------------------------------------------------------------------

def once_each(items: list[InputImage]) -> tuple[list[InputImage], list[str]]:
    """The uploads with each picture once (the first of files with the same bytes), and one note per file left out."""
    kept: dict[str, InputImage] = {}
    notes = []
    for item in items:
        if item.digest in kept:
            first = kept[item.digest].name
            notes.append(f"{item.name} was added twice: it is shown once." if item.name == first else
                         f"{item.name} is the same picture as {first}: it is shown once.")
        else:
            kept[item.digest] = item
    return list(kept.values()), notes


def uploads() -> tuple[list[InputImage], list[str]]:
    """Every uploaded picture once, decoded or with the sentence that says why it cannot be; notes on duplicates."""
    files = st.file_uploader("Pictures of digits", type=UPLOAD_TYPES, accept_multiple_files=True,
                             key="predict_uploads", help="PNG, JPEG, BMP, GIF or WebP, up to 5 MB each: drawings, "
                                                         "scans, photos of ink on paper, screenshots.")
    return once_each([decoded_upload(file.name, file.getvalue()) for file in files or []])


def follow_new_uploads(items: list[InputImage]) -> None:
    """Explain the first readable picture of those just added (`items`: the readable uploads): the one people
    uploaded to see. A file added that cannot be read leaves the one explained as it was."""
    seen = st.session_state.get(SEEN_KEY, ())
    new = [item.digest for item in items if item.digest not in seen]
    if new:
        st.session_state[EXPLAIN_KEY] = new[0]
    st.session_state[SEEN_KEY] = tuple(item.digest for item in items)


def explain(digest: str) -> None:
    """A gallery tile's callback: explain that picture."""
    st.session_state[EXPLAIN_KEY] = digest


def pick_upload(items: list[InputImage]) -> InputImage:
    """The upload to explain: the only one, or the one picked here, in the gallery or uploaded last."""
    if len(items) == 1:
        return items[0]
    by_digest = {item.digest: item for item in items}
    if st.session_state.get(EXPLAIN_KEY) not in by_digest:
        st.session_state[EXPLAIN_KEY] = items[0].digest  # the one explained was removed
    digest = st.selectbox("Explain", list(by_digest), format_func=lambda key: by_digest[key].name, key=EXPLAIN_KEY,
                          help="Which picture to show the answer and reasons for; all are in the gallery below.")
    return by_digest[digest]


def upload_notes(notes: list[str]) -> None:
    for note in notes:
        st.info(escape_markdown(note), icon=":material/content_copy:")


# ---- the camera ---------------------------------------------------------------------------------------------------

def camera(is_open: bool) -> InputImage | None:
    """The camera, only while its tab is open: drawing it asks the browser for the camera (getUserMedia)."""
    if not is_open:
        return None
    st.caption("No camera here, or the browser will not share it? Photograph the digit with a phone and open the "
               "picture in the Upload tab.")
    photo = st.camera_input("Photograph a digit written on paper", key="predict_camera")
    return None if photo is None else decoded_upload("the photo", photo.getvalue())


def gallery(run: LoadedRun, items: list[InputImage], several: bool, chosen: InputImage) -> None:
    """Every readable upload with its answer; a tile's button explains it above."""
    st.subheader("All your pictures")
    per_row = 5
    for start in range(0, len(items), per_row):
        for column, item in zip(st.columns(per_row), items[start:start + per_row]):
            with column.container(border=True):
                st.image(item.image, width=TILE_SIDE)
                answer = read_number(run, item.image) if several else predict_image(run, item.image)
                name = escape_markdown(item.name)
                if answer.blank:
                    st.markdown(f"{name}: **no digit**")
                else:
                    text = answer.text if several else run.class_names[answer.label]
                    st.markdown(f"{name}: **{escape_markdown(text)}** · {percent(answer.confidence, 0)}")
                current = item.digest == chosen.digest
                st.button("Shown above" if current else "Explain", key=f"predict_tile_{item.digest}",
                          on_click=explain, args=(item.digest,), disabled=current, width="stretch",
                          icon=":material/arrow_upward:")
