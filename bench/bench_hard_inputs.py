"""Real handwriting in hard conditions: how many the shipped model reads right through core.inference.predict_image.

    python bench/bench_hard_inputs.py [--data-dir ../shared/data] [--count 300] [--seed 7]

`count` MNIST test digits (chosen by `seed`; real handwriting the model was not trained on) are each rendered:
clean: scaled to a 280 px canvas, white on black, as drawn in the app;
pencil 0.20 / 0.12: dark on a sheet lit unevenly (light 190-240 across), taking 20 % / 12 % of the paper's light
  (about 43 / 26 grey levels), sensor noise of 4 levels, saved as a JPEG;
thick 70 / 50 / 200: strokes widened by 2 px (70) or 4 px (50, 200) at 28x28 (MNIST's median is about 3), the digit
  scaled to that many px on a 280 px black canvas.
Prints, per condition, how many were read right and how many were found blank. Accuracy, not speed: no timing.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.data import load_dataset  # noqa: E402
from core.inference import load_default_model, predict_image  # noqa: E402


def on_canvas(digit: np.ndarray, side: int = 280, widen: int = 0) -> Image.Image:
    if widen:
        digit = np.asarray(Image.fromarray(digit).filter(ImageFilter.MaxFilter(2 * widen + 1)))
    canvas = Image.new("L", (280, 280), 0)
    canvas.paste(Image.fromarray(digit).resize((side, side), Image.Resampling.BILINEAR), ((280 - side) // 3,) * 2)
    return canvas


def in_pencil(digit: np.ndarray, darker: float, rng: np.random.Generator) -> Image.Image:
    ink = np.zeros((400, 500))
    ink[50:350, 100:400] = np.asarray(Image.fromarray(digit).resize((300, 300), Image.Resampling.BILINEAR)) / 255
    light = np.linspace(190, 240, 500)[None, :] + np.linspace(-10, 10, 400)[:, None]
    pixels = light * (1 - darker * ink) + rng.normal(0, 4, ink.shape)
    sheet = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert("RGB")
    data = io.BytesIO()
    sheet.save(data, "JPEG", quality=85)
    return Image.open(io.BytesIO(data.getvalue()))


def conditions(rng: np.random.Generator) -> dict[str, Callable[[np.ndarray], Image.Image]]:
    return {"clean": on_canvas,
            "pencil 0.20": lambda digit: in_pencil(digit, 0.20, rng),
            "pencil 0.12": lambda digit: in_pencil(digit, 0.12, rng),
            "thick 70 (+2 px)": lambda digit: on_canvas(digit, 70, 1),
            "thick 50 (+4 px)": lambda digit: on_canvas(digit, 50, 2),
            "thick 200 (+4 px)": lambda digit: on_canvas(digit, 200, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    mnist, run = load_dataset("mnist", args.data_dir), load_default_model()
    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(len(mnist.test_images), args.count, replace=False)
    for name, render in conditions(rng).items():
        right = blank = 0
        for index in chosen:
            answer = predict_image(run, render(mnist.test_images[index].numpy()))
            blank += answer.blank
            right += answer.label == int(mnist.test_labels[index])
        print(f"{name:18s} {right:4d} of {args.count} read right ({right / args.count:.1%}), {blank} blank")


if __name__ == "__main__":
    main()
