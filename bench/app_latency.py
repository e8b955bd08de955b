"""Latency of a slider move in the app vs the naive path, side by side in one run.

A slider move (what the app's live `edit` handler does): decode the cached latent, paste the
face back into the preview-sized photo, encode the crop as PNG and the preview as JPEG (as the
page receives them). The naive path re-aligns and re-encodes the full photo on every move and
pastes at full resolution (PNG). Also reports the upload path (decode, detect, align, encode)
with each alignment backend that can run here. Paper preset, 256×256, random weights (speed
does not depend on training). FAN's weights are a download; where they cannot be had,
`--fan-random-weights` times the same network with random ones, from a temporary hub folder
(its landmarks are then meaningless, its speed is not): the upload is then estimated as dlib's
with the landmark step swapped for FAN's. Prints one JSON object.

    python bench/app_latency.py [--moves 30] [--preset paper] [--photo-side 1024] [--threads N]
    python bench/app_latency.py --fan-random-weights
"""

import argparse
import atexit
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data as skimage_data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fader.align import align_face, paste_back
from fader.editor import Editor
from fader.landmarks import BackendUnavailable, fan_weights_path, get_backend
from fader.model import FaderConfig, FaderNetwork
from fader.pixels import to_images, to_tensor
from train.config import PRESETS


def encoded_bytes(image: Image.Image, format: str = "PNG") -> int:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
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


def use_random_fan_weights(hub_dir: str) -> None:
    """Point torch.hub at `hub_dir` and put a randomly initialised FAN's state dict where
    face_alignment looks for its download."""
    from face_alignment.models import FAN

    torch.hub.set_dir(hub_dir)
    os.makedirs(os.path.dirname(fan_weights_path()), exist_ok=True)
    torch.save(FAN(4).state_dict(), fan_weights_path())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--moves", type=int, default=30, help="slider moves timed per path")
    parser.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    parser.add_argument("--photo-side", type=int, default=1024, help="the photo is resized to this")
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument(
        "--fan-random-weights",
        action="store_true",
        help="time FAN with random weights when its real ones cannot be downloaded",
    )
    args = parser.parse_args()
    if args.fan_random_weights:
        hub_dir = tempfile.mkdtemp(prefix="fader-bench-hub-")
        atexit.register(shutil.rmtree, hub_dir, ignore_errors=True)
        use_random_fan_weights(hub_dir)
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    config = FaderConfig(
        attributes=["Smiling", "Male"], preprocessing="celeba", **PRESETS[args.preset]["model"]
    )
    model = FaderNetwork(config).eval()
    side = args.photo_side
    photo = Image.fromarray(skimage_data.astronaut()).resize((side, side), Image.Resampling.BICUBIC)
    alphas = np.linspace(-1, 2, max(args.moves, 2))

    editor = Editor(model, aligner="dlib")
    handle = editor.load(photo)

    def slider_move(i: int) -> None:
        result = editor.edit(handle, {"Smiling": float(alphas[i])})
        encoded_bytes(result.crop)
        encoded_bytes(result.photo, "JPEG")

    def naive_move(i: int) -> None:
        face = align_face(photo, size=config.image_size, backend="dlib")
        with torch.no_grad():
            z = model.encode(to_tensor(face.crop))
            (crop,) = to_images(
                model.decode(z, model.slider_channels({"Smiling": float(alphas[i])}))
            )
        encoded_bytes(crop)
        encoded_bytes(paste_back(photo, crop, face))

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

    rgb = np.asarray(photo)
    for backend in ("dlib", "face_alignment"):
        try:
            landmarks = get_backend(backend)
        except BackendUnavailable as error:  # FAN's weights need a download on first use
            report[f"upload_{backend}"] = {"unavailable": str(error)}
            continue
        report[f"landmarks_{backend}"] = timings(lambda i, landmarks=landmarks: landmarks(rgb), 5)
        if backend == "face_alignment" and args.fan_random_weights:
            continue  # random landmarks fail alignment's sanity checks: estimated below
        report[f"upload_{backend}"] = timings(
            lambda i, backend=backend: Editor(model, aligner=backend).load(photo), 5
        )
    if args.fan_random_weights and "landmarks_face_alignment" in report:
        # The upload with dlib, its landmark step swapped for FAN's.
        swap = report["landmarks_face_alignment"]["p50_ms"] - report["landmarks_dlib"]["p50_ms"]
        report["upload_face_alignment"] = {
            "estimated_p50_ms": round(report["upload_dlib"]["p50_ms"] + swap, 2),
            "weights": "random: detection + landmarks timed, the rest as with dlib",
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
