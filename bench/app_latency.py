"""Latency of a slider move in the app vs the naive path, side by side in one run.

A slider move (what the app's `edit` handler does): decode the cached latent, paste the face
back into the photo, encode both images as PNG. The naive path re-aligns and re-encodes the
photo on every move. Also reports the upload path (decode, detect, align, encode) per aligner.
Paper preset, 256×256, random weights (speed does not depend on training). Prints one JSON object.

    python bench/app_latency.py [--moves 30] [--preset paper]
"""

import argparse
import io
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data as skimage_data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fader.align import align_face, paste_back
from fader.editor import Editor, to_images, to_tensor
from fader.model import FaderConfig, FaderNetwork
from train.config import PRESETS


def png_bytes(image: Image.Image) -> int:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.tell()


def timings(run: Callable[[int], None], repeats: int) -> dict[str, float]:
    run(-1)  # warm-up
    seconds = []
    for i in range(repeats):
        start = time.perf_counter()
        run(i)
        seconds.append(time.perf_counter() - start)
    ms = sorted(1000 * s for s in seconds)
    return {
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--moves", type=int, default=30, help="slider moves timed per path")
    parser.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    args = parser.parse_args()

    torch.manual_seed(0)
    config = FaderConfig(
        attributes=["Smiling", "Male"], preprocessing="celeba", **PRESETS[args.preset]["model"]
    )
    model = FaderNetwork(config).eval()
    photo = Image.fromarray(skimage_data.astronaut())
    alphas = np.linspace(-1, 2, max(args.moves, 2))

    editor = Editor(model, aligner="dlib")
    handle = editor.load(photo)

    def slider_move(i: int) -> None:
        result = editor.edit(handle, {"Smiling": float(alphas[i])})
        png_bytes(result.crop)
        png_bytes(result.photo)

    def naive_move(i: int) -> None:
        face = align_face(photo, size=config.image_size, backend="dlib")
        with torch.no_grad():
            z = model.encode(to_tensor(face.crop))
            (crop,) = to_images(
                model.decode(z, model.slider_channels({"Smiling": float(alphas[i])}))
            )
        png_bytes(crop)
        png_bytes(paste_back(photo, crop, face))

    report = {
        "benchmark": "app_latency",
        "preset": args.preset,
        "image_size": config.image_size,
        "photo": list(photo.size),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    report["slider_move"] = timings(slider_move, args.moves)
    report["naive_move"] = timings(naive_move, max(5, args.moves // 3))
    report["speedup_p50"] = round(
        report["naive_move"]["p50_ms"] / report["slider_move"]["p50_ms"], 2
    )

    def upload(i: int) -> None:
        Editor(model, aligner="dlib").load(photo)

    report["upload_dlib"] = timings(upload, 5)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
