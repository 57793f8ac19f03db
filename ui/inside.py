"""Figures for Predict's *Inside the network*: the input, the first conv's filters, each layer's output, saliency.

Every function takes results from core.inside / core.saliency and returns a plotly Figure; nothing here needs a
running app. Figures stay light: at most MAX_MAPS feature maps and MAX_FILTERS filters are drawn, each map
subsampled to at most MAX_MAP_SIDE pixels a side, and the titles say when some are left out.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from core.inside import DenseUnits, FeatureMaps, InsideView, Layer

MAX_MAPS = 16  # feature maps drawn per conv layer: the first ones, the same whatever the drawing
MAX_FILTERS = 32
MAX_MAP_SIDE = 32  # px: larger maps are subsampled (no zoo model makes one, a future one might); < 256 (uint8)
MAX_UNITS = 512  # bars drawn per dense layer
GAP = 1  # px of empty space between tiles
UNIT_COLOUR = "#c9d6e3"  # as the probability bars on Predict
TOP_COLOUR = "#1f77b4"
SALIENCY_SCALE = [[0.0, "rgba(255,80,0,0)"], [0.25, "rgba(255,80,0,0.35)"], [1.0, "rgba(255,230,0,0.95)"]]
MARGIN = {"l": 0, "r": 0, "t": 34, "b": 0}
SALIENCY_CAPTION = ("Bright pixels are the ink that counted most for the answer, for or against it: Integrated "
                    "Gradients from a blank square, averaged over noisy copies of the input (SmoothGrad).")


def _columns(count: int) -> int:
    """Tiles per row for a near-square grid, at most 8 wide."""
    return max(1, min(8, int(np.ceil(np.sqrt(count)))))


def _subsampled(maps: np.ndarray) -> np.ndarray:
    """(N, H, W) with every side brought to at most MAX_MAP_SIDE by taking every k-th pixel."""
    step = max(1, -(-max(maps.shape[1:]) // MAX_MAP_SIDE))
    return maps[:, ::step, ::step]


def tiled(maps: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Maps (N, H, W) laid out in a grid with GAP px of NaN between them, and for each cell [map, row, column]
    for the hover text (uint8: a quarter of the bytes sent of int32; the gaps have no hover)."""
    count, height, width = maps.shape
    rows = -(-count // columns)
    grid = np.full((rows * (height + GAP) - GAP, columns * (width + GAP) - GAP), np.nan, dtype=np.float32)
    where = np.zeros(grid.shape + (3,), dtype=np.uint8)
    cell_rows, cell_cols = np.mgrid[0:height, 0:width]
    for index, values in enumerate(maps):
        top, left = (index // columns) * (height + GAP), (index % columns) * (width + GAP)
        grid[top:top + height, left:left + width] = values
        where[top:top + height, left:left + width] = np.stack(
            [np.full((height, width), index), cell_rows, cell_cols], axis=-1)
    return grid, where


def _figure(traces: list[dict], title: str, height: int, **layout: object) -> go.Figure:
    """A figure built in one call from plain dicts (5x faster than go.Heatmap plus update_layout: about 1 ms)."""
    return go.Figure(data=traces, layout={"title": {"text": title, "font": {"size": 13}}, "margin": MARGIN,
                                          "height": height, **layout})


def _image_figure(traces: list[dict], title: str, height: int) -> go.Figure:
    """Image axes: row 0 at the top, square pixels, no ticks."""
    return _figure(traces, title, height, xaxis={"constrain": "domain", "visible": False},
                   yaxis={"autorange": "reversed", "scaleanchor": "x", "constrain": "domain", "visible": False})


def _tiles_figure(maps: np.ndarray, title: str, colorscale: str, hover: str, *, centred: bool) -> go.Figure:
    """One heatmap of tiled maps with square pixels, one colour scale for all (so maps compare), values on hover."""
    grid, where = tiled(maps, _columns(len(maps)))
    peak = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0
    heatmap = {"type": "heatmap", "z": grid, "customdata": where, "colorscale": colorscale, "hoverongaps": False,
               "hovertemplate": hover + "<extra></extra>", "colorbar": {"thickness": 10}}
    if centred:
        heatmap.update(zmin=-peak, zmax=peak)
    return _image_figure([heatmap], html.escape(title), int(120 + 260 * min(1.0, grid.shape[0] / grid.shape[1])))


def _shown_count(total: int, shown: int, noun: str) -> str:
    """'24 maps, first 16 shown' or '10 maps'."""
    return f"{total} {noun}, first {shown} shown" if shown < total else f"{total} {noun}"


def feature_maps_figure(layer: FeatureMaps, max_maps: int = MAX_MAPS) -> go.Figure:
    """A conv-like layer's first `max_maps` feature maps as a grid of heatmaps, values on hover."""
    count, height, width = layer.maps.shape
    shown = _subsampled(layer.maps[:max_maps])
    side = "" if shown.shape[1:] == (height, width) else f", subsampled to {shown.shape[2]}x{shown.shape[1]}"
    title = (f"{layer.index + 1}. {layer.title}: {_shown_count(count, len(shown), 'maps')} "
             f"of {width}x{height}{side}")
    hover = "map %{customdata[0]}, row %{customdata[1]}, column %{customdata[2]}: %{z:.3f}"
    signed = float(layer.maps.min()) < 0
    return _tiles_figure(shown, title, "RdBu_r" if signed else "Viridis", hover, centred=signed)


def dense_figure(layer: DenseUnits, class_names: Sequence[str] | None = None) -> go.Figure:
    """A dense layer's units as bars, the most active ones coloured and ranked (#1 is the largest); class names as
    the x labels when the layer has one unit per class (the output layer)."""
    values = layer.values[:MAX_UNITS]
    per_class = class_names is not None and len(class_names) == len(layer.values)
    names = ([html.escape(name) for name in class_names] if per_class
             else [str(unit) for unit in range(len(layer.values))])
    rank = {unit: position + 1 for position, unit in enumerate(layer.top_units)}
    colours = [TOP_COLOUR if unit in rank else UNIT_COLOUR for unit in range(len(values))]
    bars = {"type": "bar", "x": names[:len(values)], "y": values, "marker": {"color": colours, "line": {"width": 0}},
            "text": [f"#{rank[unit]}" if unit in rank else "" for unit in range(len(values))],
            "textposition": "outside", "cliponaxis": False,
            "hovertemplate": ("class" if per_class else "unit") + " %{x}: %{y:.3f}<extra></extra>"}
    title = (f"{layer.index + 1}. {html.escape(layer.title)}: "
             f"{_shown_count(len(layer.values), len(values), 'units')}; most active: "
             + ", ".join(names[unit] for unit in layer.top_units))
    return _figure([bars], title, 220, bargap=0.1 if len(values) <= 64 else 0, showlegend=False,
                   xaxis={"type": "category", "showticklabels": per_class or len(values) <= 64})


def layer_figure(layer: Layer, class_names: Sequence[str] | None = None) -> go.Figure:
    """The figure for one layer: a grid of heatmaps for feature maps, bars for units."""
    if isinstance(layer, FeatureMaps):
        return feature_maps_figure(layer)
    return dense_figure(layer, class_names)


def filters_figure(filters: np.ndarray, max_filters: int = MAX_FILTERS) -> go.Figure:
    """The first conv's kernels as a grid, red for positive weights and blue for negative ones."""
    shown = filters[:max_filters]
    height, width = filters.shape[1:]
    title = f"First conv layer's filters: {_shown_count(len(filters), len(shown), 'kernels')} of {width}x{height}"
    hover = "filter %{customdata[0]}, row %{customdata[1]}, column %{customdata[2]}: weight %{z:.3f}"
    return _tiles_figure(shown, title, "RdBu_r", hover, centred=True)


def input_figure(model_input: np.ndarray) -> go.Figure:
    """The normalised input the model is given, as a grey heatmap with each value on hover."""
    height, width = model_input.shape
    heatmap = {"type": "heatmap", "z": model_input, "colorscale": "gray", "colorbar": {"thickness": 10},
               "hovertemplate": "row %{y}, column %{x}: %{z:.3f}<extra></extra>"}
    return _image_figure([heatmap], f"Input as the model sees it: {width}x{height}, normalised", 300)


def inside_figures(view: InsideView, class_names: Sequence[str] | None = None) -> list[go.Figure]:
    """Every figure of the view in reading order: the input, the first conv's filters (if any), then each layer."""
    figures = [input_figure(view.model_input)]
    if view.filters is not None:
        figures.append(filters_figure(view.filters))
    return figures + [layer_figure(layer, class_names) for layer in view.layers]


def saliency_figure(pixels: np.ndarray, max_value: int, strength: np.ndarray, title: str = "") -> go.Figure:
    """A saliency map (H, W) in 0..1 laid over the model's input in grey: transparent where it is weak."""
    return _image_figure([
        {"type": "heatmap", "z": pixels, "zmin": 0, "zmax": max_value, "colorscale": "gray", "showscale": False,
         "hoverinfo": "skip"},
        {"type": "heatmap", "z": strength, "zmin": 0, "zmax": 1, "colorscale": SALIENCY_SCALE,
         "colorbar": {"thickness": 10}, "customdata": strength * 100,  # "45 %", as the app writes it (not d3's "%")
         "hovertemplate": "row %{y}, column %{x}: %{customdata:.0f} % of the strongest<extra></extra>"}],
        html.escape(title), 300)
