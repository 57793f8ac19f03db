"""Test images: digits drawn the way people draw them (stroke paths in a unit square), photos of them, and files
that are broken or odd in every way an upload can be. Used by unit, page and browser tests."""

from __future__ import annotations

import io
import math
import struct
import zlib

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


def phone_photo(digit: int, size: tuple[int, int] = (4032, 3024), *, seed: int = 0, quality: int = 90) -> bytes:
    """A phone's JPEG of a digit in dark ink on paper lit unevenly, with sensor noise: megapixels, as uploaded."""
    rng = np.random.default_rng(seed)
    width, height = size
    box = (width * 0.3, height * 0.15, width * 0.62, height * 0.85)
    ink = np.asarray(drawn(digit, width=max(6, width // 40), size=size, box=box, mode="L", background=0, ink=255),
                     dtype=np.float32) / 255
    light = np.linspace(120, 235, width, dtype=np.float32)[None, :] + np.linspace(-20, 20, height, dtype=np.float32)[:, None]
    pixels = light * (1 - 0.75 * ink) + rng.normal(0, 5, ink.shape).astype(np.float32)
    return encoded(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert("RGB"), "JPEG", quality=quality)


def on_transparent(digit: int, ink=(0, 0, 0, 255)) -> Image.Image:
    """A digit in ink of any colour on a fully transparent background, as exported from drawing apps."""
    return drawn(digit, background=(0, 0, 0, 0), ink=ink)


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    """The image as a file of format `fmt`, in memory."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares an enormous image (a decompression bomb)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def bad_and_odd_files() -> dict[str, tuple[bytes, str]]:
    """Each file's content and the words its one message must contain."""
    good = encoded(drawn(5, mode="L", background=255, ink=0), "PNG")
    frames = [drawn(2).convert("RGB"), Image.new("RGB", (280, 280))]
    deep = Image.fromarray(np.asarray(drawn(8, mode="L", background=255, ink=0), dtype=np.uint16) * 257)
    photo = encoded(photo_of(7), "JPEG")
    cut_short = photo[:int(len(photo) * 0.9)] + b"\xff\xd9"  # closed again: PIL decodes its missing blocks grey
    return {
        "notes.png": (b"These are my notes, not a picture.", "is not an image this app can read"),
        "truncated.png": (good[: len(good) // 2], "is damaged or truncated"),
        "empty.png": (b"", "is empty"),
        "dot.png": (encoded(Image.new("L", (1, 1), 0), "PNG"), "is too small (1x1 pixels)"),
        "bomb.png": (png_declaring(30_000, 30_000), "was not decoded"),
        "white.png": (encoded(Image.new("L", (200, 200), 255), "PNG"), "No digit found in white.png"),
        "black.png": (encoded(Image.new("RGB", (200, 200)), "PNG"), "No digit found in black.png"),
        "animated.gif": (encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100),
                         "animated.gif is animated: only its first frame is used"),
        "deep.png": (encoded(deep, "PNG"), "deep.png has more than 8 bits per pixel"),
        "print.jpg": (encoded(drawn(4, mode="L", background=255, ink=0).convert("CMYK"), "JPEG", quality=95),
                      "print.jpg is a CMYK (print) image"),
        "cut.jpg": (cut_short, "cut.jpg seems cut short: its last"),
    }


def _pen(digit: int, size: tuple[int, int], box: tuple[float, float, float, float], width: int) -> np.ndarray:
    """How much pen covers each pixel, 0..1, (H, W, 1): the digit drawn into `box` of a picture of `size`."""
    return np.asarray(drawn(digit, width=width, size=size, box=box, mode="L", background=0, ink=255),
                      dtype=np.float32)[..., None] / 255


def _written_on(page: np.ndarray, pen: np.ndarray, noise: np.ndarray | float = 0.0) -> Image.Image:
    """Dark blue-black pen over an RGB page (float, H x W x 3), as an 8-bit picture."""
    pixels = page * (1 - pen) + np.array((30, 30, 40), np.float32) * pen + noise
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def on_notebook_paper(digit: int, *, squared: bool = False, margin: bool = True, stray: bool = False) -> Image.Image:
    """A digit in dark pen on a notebook page photographed whole: pale blue ruled lines (or squares) across it, a red
    margin line, and, with `stray`, a scribble in a far corner of the page."""
    size = (600, 450)
    pen = _pen(digit, size, (250, 120, 400, 360), 8)
    page = np.empty((size[1], size[0], 3), dtype=np.float32)
    page[:] = (238, 236, 228)
    blue, red = np.array((150, 190, 235), np.float32), np.array((225, 90, 90), np.float32)
    for y in range(30, size[1], 32):
        page[y:y + 2] = blue
    if squared:
        for x in range(20, size[0], 32):
            page[:, x:x + 2] = blue
    if margin:
        page[:, 70:73] = red
    if stray:
        pen = np.maximum(pen, _pen(2, size, (520, 380, 580, 440), 6))
    return _written_on(page, pen)


def on_a_desk(digit: int) -> Image.Image:
    """A sheet of paper with a digit in dark pen, photographed on a darker wooden desk that shows all round it."""
    size = (800, 600)
    picture = np.empty((size[1], size[0], 3), dtype=np.float32)
    picture[:] = (110, 80, 60)  # the desk
    picture[60:540, 90:700] = (236, 233, 226)  # the sheet
    return _written_on(picture, _pen(digit, size, (330, 150, 480, 450), 10),
                       np.random.default_rng(digit).normal(0, 4, picture.shape))


def in_faint_pencil(digit: int | None, *, darker: float = 0.12, noise: float = 3.0, seed: int = 0) -> Image.Image:
    """A light pencil's digit (`darker`: the share of the paper's light it takes, 0.12 = about 26 grey levels) on a
    sheet lit unevenly, with sensor noise, saved and reloaded as a JPEG; `digit` None: the sheet with nothing on it."""
    rng = np.random.default_rng(seed)
    size = (480, 360)
    pen = _pen(digit, size, (170, 50, 330, 310), 10)[..., 0] if digit is not None else np.zeros(size[::-1], np.float32)
    light = np.linspace(195, 235, size[0])[None, :] + np.linspace(-8, 8, size[1])[:, None]
    pixels = light * (1 - darker * pen) + rng.normal(0, noise, pen.shape)
    sheet = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert("RGB")
    return Image.open(io.BytesIO(encoded(sheet, "JPEG", quality=85)))
