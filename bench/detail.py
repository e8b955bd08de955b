"""What "keep photo detail" (s) does on the bundled digits model: swap accuracy and PSNR.

Every held-out mnist5k digit (the validation and test splits the model never trained on) goes
through the app's own path, `fader.editor.Editor`: loaded once (sliders starting at what the
model's classifier reads, y₀), then decoded as each other digit at s = 0 (the baseline, the
decoder's output alone) and at s = 1 (plus the photo's residual x − D(z, y₀)). The model's own
classifier judges the swaps; reconstruction decodes at the digit's true class. A grid of both
is saved next to the JSON.

    python bench/detail.py                       # all 500 held-out digits
    python bench/detail.py --limit 100 --out /tmp/detail

Prints one JSON object and writes it to --out/detail_digits.json with detail_digits.png.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fader.classifier import Classifier  # noqa: E402
from fader.editor import Editor  # noqa: E402
from fader.model import FaderNetwork  # noqa: E402
from fader.pixels import to_tensor  # noqa: E402
from train.data import prepare  # noqa: E402
from train.sources import TEST, VALIDATION, read_mnist5k  # noqa: E402

MODEL = ROOT / "assets" / "models" / "digits"
DETAILS = (0.0, 1.0)
GRID_SCALE = 3


def held_out_digits(size: int, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 N×S×S×3 held-out digits and their classes, from the trainer's cache."""
    data = prepare(read_mnist5k(), size)
    rows = data.indices(VALIDATION, TEST)[:limit]
    return data.read_images(rows).transpose(0, 2, 3, 1), data.labels[rows].argmax(1)


def psnr(edited: np.ndarray, original: np.ndarray) -> dict[str, float]:
    """PSNR over the set (from its mean squared error) and the mean per-image PSNR capped at
    100 dB as `train.metrics` measures it (the model card's figure), both on the [0, 1] scale."""
    error = ((edited.astype(np.float64) - original) / 255) ** 2
    per_image = error.reshape(len(error), -1).mean(1)
    return {
        "psnr_db": float(10 * np.log10(1 / max(per_image.mean(), 1e-10))),
        "psnr_mean_per_image_db": float((10 * np.log10(1 / np.maximum(per_image, 1e-10))).mean()),
        "exact_fraction": float((per_image == 0).mean()),
    }


def measure(editor: Editor, classifier: Classifier, digits: np.ndarray, classes: np.ndarray):
    names = editor.attributes
    one_hot = [{name: float(i == k) for i, name in enumerate(names)} for k in range(len(names))]
    hits = dict.fromkeys(DETAILS, 0)
    reconstructions: dict[float, list[np.ndarray]] = {s: [] for s in DETAILS}
    grid_rows = grid_digits(classes)
    grids: dict[float, list[list[Image.Image]]] = {s: [[]] * len(grid_rows) for s in DETAILS}
    for row, (digit, own) in enumerate(zip(digits, classes, strict=True)):
        photo_id = editor.load(Image.fromarray(digit))  # the store keeps the last few only
        for s in DETAILS:
            crops = editor.decode(photo_id, one_hot, detail=s)
            read = classifier.read(torch.cat([to_tensor(c) for c in crops])).argmax(1)
            hits[s] += sum(int(read[k] == k) for k in range(len(names)) if k != own)
            reconstructions[s].append(np.asarray(crops[own]))
            if row in grid_rows:
                grids[s][grid_rows.index(row)] = crops
    results = {
        f"s={s:g}": {
            "swap_accuracy": hits[s] / (len(digits) * (len(names) - 1)),
            **psnr(np.stack(reconstructions[s]), digits),
        }
        for s in DETAILS
    }
    return results, grids


def grid_digits(classes: np.ndarray) -> list[int]:
    """The first held-out digit of each class: the sample grid's rows."""
    return [int(np.flatnonzero(classes == c)[0]) for c in np.unique(classes)]


def sample_grid(digits: np.ndarray, grids: dict[float, list[list[Image.Image]]]) -> Image.Image:
    """Rows: a held-out digit, then decoded as 0…9 at s = 0, then as 0…9 at s = 1."""
    tile = digits.shape[1] * GRID_SCALE
    columns = 1 + sum(len(row) for row in (g[0] for g in grids.values()))
    gap, header = tile // 3, 18
    canvas = Image.new(
        "RGB", (columns * tile + len(grids) * gap, header + len(digits) * tile), "white"
    )
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 2), "photo", fill="black")
    for r, digit in enumerate(digits):
        big = Image.fromarray(digit).resize((tile, tile), Image.Resampling.NEAREST)
        canvas.paste(big, (0, header + r * tile))
    x = tile
    for s, rows in grids.items():
        x += gap
        draw.text((x + 4, 2), f"s = {s:g}: decoded as 0 … 9", fill="black")
        for r, crops in enumerate(rows):
            for c, crop in enumerate(crops):
                big = crop.resize((tile, tile), Image.Resampling.NEAREST)
                canvas.paste(big, (x + c * tile, header + r * tile))
        x += len(rows[0]) * tile
    return canvas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="held-out digits to use (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = FaderNetwork.from_pretrained(MODEL)
    classifier = Classifier.from_folder(MODEL)
    editor = Editor(model, classifier=classifier)
    digits, classes = held_out_digits(model.config.image_size, args.limit)
    results, grids = measure(editor, classifier, digits, classes)
    baseline, kept = results["s=0"], results["s=1"]
    report = {
        "model": "assets/models/digits",
        "held_out_digits": len(digits),
        "judge": "the model's own classifier (classifier.safetensors)",
        "slider_start": "the classifier's reading of each digit (y0)",
        **results,
        "swap_accuracy_ratio_s1_to_s0": kept["swap_accuracy"] / baseline["swap_accuracy"],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "detail_digits.json").write_text(json.dumps(report, indent=2) + "\n")
    sample_grid(digits[grid_digits(classes)], grids).save(args.out / "detail_digits.png")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
