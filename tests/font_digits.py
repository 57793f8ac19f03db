"""A small digit collection for tests and benchmarks: digits typed in the machine's italic fonts at varied sizes,
slants and stroke widths on 280x280 canvases, saved in the ImageFolder layout (NAME/0/*.png ... NAME/9/*.png).

Typed upright, the shipped model reads 99% of them; stretched wide and slanted backwards, as one person's
handwriting might be, it reads about half: room for a fine-tune to show what it learns.

    python -m tests.font_digits FOLDER [--per-class 15] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT_FOLDERS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation"),
                Path("/usr/share/fonts/truetype"), Path("/usr/share/fonts"))
FONT_FILES = ("DejaVuSerif-Italic.ttf", "LiberationSerif-Italic.ttf", "DejaVuSansMono-Oblique.ttf",
              "LiberationSans-Italic.ttf", "DejaVuSans-Oblique.ttf", "LiberationMono-Italic.ttf")
CANVAS = 280
STRETCH = (1.6, 2.2)  # times wider than the font draws it
BACK_SLANT = (-0.6, -0.3)  # horizontal shear: tops lean left, unlike MNIST's writers


def available_fonts() -> list[Path]:
    """The italic TTF fonts of FONT_FILES that this machine has (DejaVu and Liberation on Debian)."""
    found = {}
    for folder in FONT_FOLDERS:
        for name in FONT_FILES:
            if name not in found and (folder / name).is_file():
                found[name] = folder / name
    return [found[name] for name in FONT_FILES if name in found]


def font_digit(digit: int, font_path: Path, rng: random.Random) -> Image.Image:
    """One digit typed in `font_path` on a 280x280 canvas, as one person's wide, back-slanted hand: random size,
    width, slant, turn, stroke width, place and colours."""
    font = ImageFont.truetype(str(font_path), rng.randint(110, 170))
    glyph = Image.new("L", (2 * CANVAS, CANVAS), 0)  # twice as wide: room to stretch
    ImageDraw.Draw(glyph).text((CANVAS, CANVAS / 2), str(digit), fill=255, font=font, anchor="mm",
                               stroke_width=rng.randint(0, 6), stroke_fill=255)
    stretch, slant = rng.uniform(*STRETCH), rng.uniform(*BACK_SLANT)
    glyph = glyph.transform(glyph.size, Image.Transform.AFFINE,  # output (x, y) samples input (a x + b y + c, y)
                            (1 / stretch, slant, CANVAS * (1 - 1 / stretch) - slant * CANVAS / 2, 0, 1, 0),
                            resample=Image.Resampling.BILINEAR)
    glyph = glyph.rotate(rng.uniform(-10, 10), resample=Image.Resampling.BILINEAR,
                         translate=(rng.randint(-15, 15), rng.randint(-20, 20)))
    glyph = glyph.crop((CANVAS // 2, 0, CANVAS // 2 + CANVAS, CANVAS))
    if rng.random() < 0.5:
        return Image.merge("RGB", [glyph] * 3)  # white ink on black, as the canvas draws
    ink = rng.randint(0, 60)
    return Image.merge("RGB", [glyph.point(lambda v: 255 - v * (255 - ink) // 255)] * 3)  # dark ink on paper


def font_digits(per_class: int = 15, seed: int = 0) -> list[tuple[int, Image.Image]]:
    """`per_class` images of each digit 0-9 as (label, image), fonts taken in turn; [] without any font."""
    fonts, rng = available_fonts(), random.Random(seed)
    if not fonts:
        return []
    return [(digit, font_digit(digit, fonts[index % len(fonts)], rng))
            for digit in range(10) for index in range(per_class)]


def write_collection(folder: Path, per_class: int = 15, seed: int = 0) -> int:
    """Write the images as FOLDER/<digit>/<n>.png; returns how many were written."""
    images = font_digits(per_class, seed)
    for index, (digit, image) in enumerate(images):
        (folder / str(digit)).mkdir(parents=True, exist_ok=True)
        image.save(folder / str(digit) / f"font-{index:04d}.png")
    return len(images)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--per-class", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    count = write_collection(args.folder, args.per_class, args.seed)
    print(f"{count} images in {args.folder}" if count else "no DejaVu or Liberation font found")
