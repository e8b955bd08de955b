"""Face alignment speed (ms per photo) per backend at 512² and 2048², and paste-back speed.

The baseline is the straightforward pipeline: dlib's HOG detector and 68-point predictor run
once on the full photo (upsampled once for small photos, as dlib's examples do), then the
similarity warp. Ours detects on a ≤1024 px copy, looks again at an upright copy of each face
and anti-aliases the warp. Both run in the same process on the same photos, alternating, so the
ratio holds on a noisy machine. Prints one JSON object.

    python bench/align.py
    python bench/align.py --runs 9 --backends dlib face_alignment
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("FADER_OFFLINE", "1")  # a benchmark must not download weights

from fader import landmarks
from fader.align import align_face, crop_transform, paste_back, warp_to_crop


def test_photo(side: int) -> Image.Image:
    from skimage.data import astronaut

    return Image.fromarray(astronaut()).resize((side, side), Image.Resampling.BICUBIC)


class BaselineAligner:
    """dlib on the full photo, one pass, then the same CelebA warp."""

    def __init__(self) -> None:
        import dlib

        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(landmarks.dlib_model_path())

    def __call__(self, photo: Image.Image) -> np.ndarray:
        rgb = np.asarray(photo)
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        rects = self.detector(gray, 1 if max(gray.shape) < 1024 else 0)
        rect = max(rects, key=lambda r: r.area())
        points = np.array([(p.x, p.y) for p in self.predictor(gray, rect).parts()], dtype=float)
        return warp_to_crop(rgb, crop_transform(points, 256), 256)


def p50_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm-up: model loading, numba compilation
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per measurement (median)")
    parser.add_argument("--backends", nargs="+", default=["dlib", "face_alignment"])
    args = parser.parse_args()

    result: dict[str, object] = {
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "runs": args.runs,
    }
    photos = {side: test_photo(side) for side in (512, 2048)}
    baseline = BaselineAligner()
    for name in args.backends:
        try:
            landmarks.get_backend(name)
        except ValueError as error:
            result[name] = {"unavailable": str(error)}
            continue
        per_side = {}
        for side, photo in photos.items():
            ours = p50_ms(lambda photo=photo, name=name: align_face(photo, backend=name), args.runs)
            per_side[f"{side}px_ms"] = ours
            if name == "dlib":
                plain = p50_ms(lambda photo=photo: baseline(photo), args.runs)
                per_side[f"{side}px_baseline_ms"] = plain
                per_side[f"{side}px_ratio"] = round(ours / plain, 2)
        result[name] = per_side
    for side, photo in photos.items():
        aligned = align_face(photo, backend="dlib")
        result[f"paste_back_{side}px_ms"] = p50_ms(
            lambda photo=photo, aligned=aligned: paste_back(photo, aligned.crop, aligned), args.runs
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
