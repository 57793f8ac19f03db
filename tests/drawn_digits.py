"""Digits drawn the way people draw them, as stroke paths in a unit square: for unit, page and browser tests."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw

Point = tuple[float, float]


def arc(centre_x: float, centre_y: float, radius_x: float, radius_y: float, start: float = 0, end: float = 360,
        points: int = 24) -> list[Point]:
    """Points along an ellipse, angles in degrees clockwise from twelve o'clock."""
    return [(centre_x + radius_x * math.sin(math.radians(a)), centre_y - radius_y * math.cos(math.radians(a)))
            for a in np.linspace(start, end, points)]


STROKES: dict[int, list[list[Point]]] = {  # one list of points per pen-down stroke
    0: [arc(0.5, 0.5, 0.25, 0.38, points=40)],
    1: [[(0.42, 0.22), (0.55, 0.12), (0.55, 0.88)]],
    2: [arc(0.5, 0.33, 0.22, 0.2, -80, 130, 20) + [(0.25, 0.85), (0.78, 0.85)]],
    3: [arc(0.48, 0.3, 0.2, 0.18, -90, 170, 20) + arc(0.48, 0.68, 0.22, 0.2, 10, 250, 20)],
    4: [[(0.6, 0.12), (0.22, 0.62), (0.8, 0.62)], [(0.62, 0.35), (0.62, 0.9)]],
    5: [[(0.72, 0.15), (0.35, 0.15), (0.3, 0.45)] + arc(0.48, 0.64, 0.23, 0.22, -60, 220, 20)],
    6: [[(0.65, 0.12), (0.35, 0.5)] + arc(0.5, 0.66, 0.2, 0.2, -120, 250)],
    7: [[(0.22, 0.15), (0.78, 0.15), (0.45, 0.9)]],
    8: [arc(0.5, 0.3, 0.17, 0.17, 180, 540) + arc(0.5, 0.68, 0.22, 0.2, 0, -360)],
    9: [arc(0.5, 0.32, 0.2, 0.2, 90, 450) + [(0.7, 0.33), (0.65, 0.9)]],
}


def strokes_in(digit: int, box: tuple[float, float, float, float]) -> list[list[Point]]:
    """The digit's strokes scaled into box = (left, top, right, bottom)."""
    left, top, right, bottom = box
    return [[(left + x * (right - left), top + y * (bottom - top)) for x, y in stroke] for stroke in STROKES[digit]]


def drawn(digits: int | str, *, width: int = 18, box: tuple[float, float, float, float] | None = None,
          size: tuple[int, int] = (280, 280), background=(0, 0, 0, 255), ink=(255, 255, 255, 255),
          mode: str = "RGBA") -> Image.Image:
    """One digit (or a string of digits side by side) drawn as the canvas returns it: white on opaque black."""
    image = Image.new(mode, size, background)
    pen = ImageDraw.Draw(image)
    text = str(digits)
    left, top, right, bottom = box or (20, 20, size[0] - 20, size[1] - 20)
    step = (right - left) / len(text)
    for index, character in enumerate(text):
        cell = (left + index * step, top, left + (index + 1) * step, bottom)
        for stroke in strokes_in(int(character), cell):
            pen.line(stroke, fill=ink, width=width, joint="curve")
    return image


def photo_of(digit: int, *, seed: int = 0) -> Image.Image:
    """Dark ink on paper lit unevenly from one side, with sensor noise, saved and reloaded as a JPEG."""
    rng = np.random.default_rng(seed)
    ink = np.asarray(drawn(digit, width=14, size=(400, 300), box=(110, 30, 300, 270), mode="L", background=0, ink=255),
                     dtype=float) / 255
    light = np.linspace(120, 235, 400)[None, :] + np.linspace(-20, 20, 300)[:, None]
    pixels = light * (1 - 0.75 * ink) + rng.normal(0, 5, ink.shape)
    photo = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert("RGB")
    return Image.open(io.BytesIO(encoded(photo, "JPEG", quality=85)))


def on_transparent(digit: int, ink=(0, 0, 0, 255)) -> Image.Image:
    """A digit in ink of any colour on a fully transparent background, as exported from drawing apps."""
    return drawn(digit, background=(0, 0, 0, 0), ink=ink)


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    """The image as a file of format `fmt`, in memory."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()
