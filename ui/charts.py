"""Figures and images shared by pages: confusion matrix, per-class accuracy, and fast image grids.

Nothing here needs a running app: every function returns a plotly Figure or a PIL image.
"""

from __future__ import annotations

import base64
import importlib
import io
from functools import lru_cache
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageColor, ImageDraw, ImageFont

from ui.train_format import HALVES, QUARTERS, percent, percent_ticks

TILE_TARGET = 56  # px a sample is drawn at in a grid: 8x8 digits x7, 28x28 MNIST x2
TILE_PAD = 3  # px around each tile; marked tiles draw their border here
CAPTION_HEIGHT = 19
CAPTION_FONT = 14  # px: a grid is shown at 5/6 of its size in its column, and "6", "8" and "9" must stay apart
BACKGROUND = (255, 255, 255)
CAPTION_COLOR = (49, 51, 63)
MARK_COLOR = (214, 39, 40)  # plotly's red: wrong predictions
HIGHLIGHT_COLOR = (31, 119, 180)  # plotly's blue: the sample shown large
FIGURE_GREY = "#555867"  # a figure written beside its bar
BAR_ROW, BAR_CHART_FRAME = 24, 80  # px: a class's row in the per-class accuracy chart, and its axis and margins
CLICK_TARGET = "rgba(0,0,0,0)"  # invisible markers that make tiles and cells clickable
# customdata is given as plain lists: a numpy array travels as a typed array, and a selection event then reports
# each point's customdata as {"0": ...} instead of [...].


@lru_cache(maxsize=4)
def settle_pandas() -> None:
    """Import pandas now, waiting for it when another thread is importing it.

    Plotly looks pandas up in sys.modules without importing it, so while the previous run of a page (Streamlit
    starts a rerun before the old run has stopped) was still importing pandas (scikit-learn's digits load it),
    building a figure failed with "partially initialized module 'pandas' has no attribute 'Series'". An import
    statement waits for the other thread's import to finish. Explore imports pandas anyway (its first dataset,
    the 8x8 digits, comes through scikit-learn), so this costs nothing more there.
    """
    importlib.import_module("pandas")


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)  # Pillow's bundled font: no system font needed


def tile_scale(image_side: int, target: int = TILE_TARGET) -> int:
    """Whole-number upscaling factor that brings a side close to `target` px (nearest neighbour keeps pixels crisp)."""
    return max(1, round(target / max(1, image_side)))


def image_grid(images: np.ndarray, captions: Sequence[str], columns: int, *, max_value: int = 255,
               scale: int | None = None, marked: Sequence[bool] | np.ndarray | None = None,
               highlighted: int | None = None) -> Image.Image:
    """One RGB mosaic of many small uint8 images (N, H, W) with a caption under each.

    Built with numpy in one pass (about 10 ms for 100 MNIST images), so a page shows 100+ samples as one image.
    `max_value` is the images' white (16 for scikit-learn digits); `marked` tiles get a red border and caption
    (e.g. wrong predictions); the tile at position `highlighted` gets a blue border.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"expected images shaped (N, H, W), got {images.shape}")
    if len(captions) != len(images):
        raise ValueError(f"{len(images)} images but {len(captions)} captions.")
    count, height, width = images.shape
    scale = scale or tile_scale(max(height, width))
    cell_w, cell_h = grid_cell_size(images.shape[1:], scale)
    columns = max(1, min(columns, count)) if count else max(1, columns)
    rows = max(1, -(-count // columns))
    canvas = np.full((rows * cell_h, columns * cell_w, 3), BACKGROUND, dtype=np.uint8)
    marks = np.zeros(count, dtype=bool) if marked is None else np.asarray(marked, dtype=bool)
    if count:
        _paste_tiles(canvas, _upscaled_grey(images, max_value, scale), columns, (cell_w, cell_h), marks, highlighted)
    mosaic = Image.fromarray(canvas)
    _draw_captions(mosaic, captions, columns, (cell_w, cell_h), (width * scale, height * scale), marks)
    return mosaic


def map_image(values: np.ndarray, top: float, colours: Sequence[str] | None = None, scale: int = 5) -> Image.Image:
    """A 2-D map (a class's mean, the spread of a dataset) as a picture, each value a square of `scale` px: grey from 0
    to `top`, or along `colours` (colour stops, evenly spaced, as plotly.colors' scales)."""
    share = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64) / (top or 1.0)), 0.0, 1.0)
    if colours is None:
        rgb = np.repeat(np.rint(share * 255).astype(np.uint8)[..., None], 3, axis=-1)
    else:
        stops = np.array([ImageColor.getrgb(colour)[:3] for colour in colours], dtype=np.float64)
        at = np.linspace(0.0, 1.0, len(stops))
        rgb = np.rint(np.stack([np.interp(share, at, stops[:, channel]) for channel in range(3)], -1)).astype(np.uint8)
    height, width = share.shape
    return Image.fromarray(rgb).resize((width * scale, height * scale), Image.Resampling.NEAREST)


def framed_tiles(images: np.ndarray, max_value: int, marked: Sequence[bool] | np.ndarray) -> list[np.ndarray]:
    """Each uint8 image (N, H, W) upscaled as in a grid, as RGB with a TILE_PAD frame: red where `marked`, else
    white. For galleries whose captions are written as text under each image rather than drawn into it."""
    images = np.asarray(images)
    scale = tile_scale(max(images.shape[1:], default=1))
    grey = _upscaled_grey(images, max_value, scale)
    framed = np.empty((len(grey), grey.shape[1] + 2 * TILE_PAD, grey.shape[2] + 2 * TILE_PAD, 3), dtype=np.uint8)
    for tile, frame, mark in zip(grey, framed, np.asarray(marked, dtype=bool)):
        frame[:] = MARK_COLOR if mark else BACKGROUND
        frame[TILE_PAD:-TILE_PAD, TILE_PAD:-TILE_PAD] = tile[..., None]
    return list(framed)


def grid_cell_size(image_shape: tuple[int, ...], scale: int) -> tuple[int, int]:
    """(width, height) in px of one grid cell: the scaled tile, its padding and its caption strip."""
    height, width = image_shape[-2:]
    return width * scale + 2 * TILE_PAD, height * scale + 2 * TILE_PAD + CAPTION_HEIGHT


def _upscaled_grey(images: np.ndarray, max_value: int, scale: int) -> np.ndarray:
    """uint8 (N, H*scale, W*scale) stretched so `max_value` is white."""
    grey = images.astype(np.float32) * (255.0 / max(1, max_value))
    grey = np.clip(grey, 0, 255).astype(np.uint8)
    return grey.repeat(scale, axis=1).repeat(scale, axis=2)


def _paste_tiles(canvas: np.ndarray, tiles: np.ndarray, columns: int, cell: tuple[int, int], marks: np.ndarray,
                 highlighted: int | None) -> None:
    cell_w, cell_h = cell
    tile_h, tile_w = tiles.shape[1:]
    for position, tile in enumerate(tiles):
        top, left = (position // columns) * cell_h, (position % columns) * cell_w
        border = HIGHLIGHT_COLOR if position == highlighted else MARK_COLOR if marks[position] else None
        if border is not None:
            canvas[top:top + tile_h + 2 * TILE_PAD, left:left + tile_w + 2 * TILE_PAD] = border
        canvas[top + TILE_PAD:top + TILE_PAD + tile_h, left + TILE_PAD:left + TILE_PAD + tile_w] = tile[..., None]


def _draw_captions(mosaic: Image.Image, captions: Sequence[str], columns: int, cell: tuple[int, int],
                   tile: tuple[int, int], marks: np.ndarray) -> None:
    draw, font = ImageDraw.Draw(mosaic), _font(CAPTION_FONT)
    cell_w, cell_h = cell
    for position, caption in enumerate(captions):
        left, top = (position % columns) * cell_w, (position // columns) * cell_h + tile[1] + 2 * TILE_PAD
        color = MARK_COLOR if marks[position] else CAPTION_COLOR
        draw.text((left + cell_w / 2, top + CAPTION_HEIGHT / 2), str(caption), fill=color, font=font, anchor="mm")


def png_data_uri(image: Image.Image) -> str:
    """A PNG data URI: how a page embeds a raster image (ui.tile_grid's mosaic) without a file to serve."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # fast; the mosaic is mostly flat colour anyway
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def confusion_figure(confusion: np.ndarray, class_names: list[str]) -> go.Figure:
    """The confusion matrix as a heatmap: true class on y, predicted on x, counts as text, each cell clickable.

    Colour is the share of the true class (row), so rare mistakes still show against the large diagonal.
    Reading a click: event = st.plotly_chart(fig, on_select="rerun", selection_mode="points", key=...);
    each of event.selection.points has "customdata" == [true_class, predicted_class, count] (class indices),
    and "y" / "x" hold the true / predicted class names.
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    size = len(class_names)
    totals = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, totals, out=np.zeros(confusion.shape, dtype=np.float64), where=totals > 0)
    true_idx, pred_idx = np.divmod(np.arange(size * size), size)
    figure = go.Figure(go.Heatmap(
        z=share, x=class_names, y=class_names, text=confusion, texttemplate="%{text}", colorscale="Blues",
        zmin=0, zmax=1, colorbar={"title": {"text": "share of<br>true class"}, **percent_ticks(HALVES)},
        hoverinfo="skip"))
    hover = [f"true {class_names[t]}, predicted {class_names[p]}: {confusion[t, p]:,} sample"
             f"{'' if confusion[t, p] == 1 else 's'} ({share[t, p] * 100:.1f} % of the true {class_names[t]})"
             for t, p in zip(true_idx, pred_idx)]
    figure.add_trace(go.Scatter(  # on top of the heatmap: heatmaps cannot be selected, markers can
        x=[class_names[i] for i in pred_idx], y=[class_names[i] for i in true_idx], mode="markers",
        marker={"size": 24, "symbol": "square", "color": CLICK_TARGET}, hovertext=hover, hoverinfo="text",
        customdata=np.stack([true_idx, pred_idx, confusion.ravel()], axis=1).tolist(),
        selected={"marker": {"opacity": 1}}, unselected={"marker": {"opacity": 1}}, showlegend=False))
    figure.update_xaxes(title="predicted", type="category", side="bottom", fixedrange=True)
    figure.update_yaxes(title="true", type="category", autorange="reversed", fixedrange=True)
    figure.update_layout(height=440, margin={"l": 10, "r": 10, "t": 30, "b": 10}, dragmode=False,
                         clickmode="event+select")
    return figure


def per_class_accuracy_figure(accuracy: np.ndarray, class_names: list[str]) -> go.Figure:
    """Per-class accuracy as bars (0 to 100 %), one row a class, the worst class in red. Lying down, each bar's
    figure has the width of the chart beside it: on ten standing bars plotly shrank them to fit (unreadable)."""
    accuracy = np.asarray(accuracy, dtype=np.float64)
    colors, figures = ["#1f77b4"] * len(accuracy), [FIGURE_GREY] * len(accuracy)
    if len(accuracy) and accuracy.min() < accuracy.max():  # all alike: none is the worst
        colors[int(accuracy.argmin())] = figures[int(accuracy.argmin())] = "#d62728"  # its figure too: at 0 % no bar
    figure = go.Figure(go.Bar(y=list(class_names), x=accuracy * 100, orientation="h", marker_color=colors,
                              text=[percent(a, 1) for a in accuracy], textposition="outside",
                              textfont={"size": 12, "color": figures}, constraintext="none", cliponaxis=False,
                              hovertemplate="%{y}: %{x:.2f} %<extra></extra>"))
    figure.update_yaxes(title="true class", type="category", autorange="reversed", automargin=True)  # first on top
    figure.update_xaxes(title="accuracy", range=[0, 122], **percent_ticks(QUARTERS, 100))
    height = BAR_CHART_FRAME + BAR_ROW * len(accuracy)  # ten classes: 320 px; two: bars as thick as ten's
    figure.update_layout(height=height, margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return figure
