"""What plotly writes on hovering a point, from a trace's hovertemplate, for tests of how figures read."""

import re

import numpy as np

FIELD = re.compile(r"%\{(\w+)(?::([^}]*))?\}")


def hover_text(trace, index: int | tuple[int, int]) -> str:
    """Trace `trace`'s hover label at point `index` (a position, or (row, column) in a heatmap): its hovertemplate
    with %{x}, %{y}, %{z} and %{customdata} filled in, without the <extra> box. Heatmaps' %{x} and %{y} are column
    and row. A d3 number format such as ".2f" is read as Python's, which writes the same digits except for an exact
    binary tie (12.5 as ".0f": Python "12", d3 "13"): tests pick values that are none."""
    def value(name: str):
        if isinstance(index, tuple) and name in ("x", "y"):
            return index[1] if name == "x" else index[0]
        return np.asarray(getattr(trace, name))[index]

    template = trace.hovertemplate.split("<extra>")[0]
    return FIELD.sub(lambda match: format(value(match[1]), match[2] or ""), template)
