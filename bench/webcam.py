"""Live webcam speed: edited frames per second at 640×480, server side, and where the time goes.

A 256² face architecture (the paper preset, random weights, `preprocessing="celeba"`) edits a
clip of the astronaut moving across a 640×480 frame (`tests/clips.py`) through `fader.stream`,
each frame then encoded as the app sends it (`fader.web_pictures.inline_frame`: JPEG in a
data: URL). Measured per frame: detection, tracking, warp, encode, decode, paste-back, image
encoding. The baseline is the same pipeline with a full detection on every frame (what
aligning each frame as a photo costs), run in the same process alternating frame by frame, so
the ratio holds on a busy machine; the host's load average is recorded beside the figures.
Prints one JSON object.

    python bench/webcam.py
    python bench/webcam.py --frames 90 --threads 1 --detail 1
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("FADER_OFFLINE", "1")  # a benchmark must not download weights

from fader.model import CELEBA, FaderConfig, FaderNetwork
from fader.stream import DETECT_EVERY, FaceStream
from fader.web_pictures import inline_frame
from tests.clips import clip
from train.config import PRESETS

STAGES = ("detection", "tracking", "warp", "encode", "decode", "paste_back", "image_encoding")


def face_model() -> FaderNetwork:
    torch.manual_seed(0)
    return FaderNetwork(
        FaderConfig(["Smiling", "Male"], preprocessing=CELEBA, **PRESETS["paper"]["model"])
    )


def timed(stream: FaceStream, frame, detail: float, seconds: dict[str, list[float]]) -> None:
    """Edit and encode one frame as the app does, adding its seconds per stage to `seconds`."""
    start = time.perf_counter()
    result = stream.edit(frame, {"Smiling": 1.0, "Male": 0.0}, detail)
    encoded = time.perf_counter()
    inline_frame(result.image, result.edited)
    done = time.perf_counter()
    for stage in STAGES[:-1]:
        seconds.setdefault(stage, []).append(result.seconds.get(stage, 0.0))
    seconds.setdefault("image_encoding", []).append(done - encoded)
    seconds.setdefault("total", []).append(done - start)


def summary(seconds: dict[str, list[float]]) -> dict[str, float]:
    total = seconds["total"]
    return {
        "frames_per_second": round(len(total) / sum(total), 2),
        "p50_frame_ms": round(1000 * statistics.median(total), 1),
        **{f"{stage}_ms": round(1000 * statistics.mean(seconds[stage]), 2) for stage in STAGES},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="frames timed per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, tracked and baseline")
    parser.add_argument(
        "--threads",
        type=int,
        default=max(1, (os.cpu_count() or 2) // 2),
        help="PyTorch threads (default: half the cores, as app.py runs)",
    )
    parser.add_argument("--detail", type=float, default=0.0, help="keep photo detail s, 0…1")
    parser.add_argument("--aligner", default="dlib")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = face_model()
    frames = clip(args.frames, 0)
    tracked = FaceStream(model, args.aligner)
    baseline = FaceStream(model, args.aligner, detect_every=1)
    for frame in frames[:3]:  # warm-up: the landmark model, first-call costs
        timed(tracked, frame, args.detail, {})
        timed(baseline, frame, args.detail, {})
    load_before = os.getloadavg()
    ours: dict[str, list[float]] = {}
    plain: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        tracked.tracker.reset()
        for frame in frames:  # frame by frame, alternating: both see the same load
            timed(tracked, frame, args.detail, ours)
            timed(baseline, frame, args.detail, plain)
    result = {
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": [round(load_before[0], 1), round(os.getloadavg()[0], 1)],
        "threads": args.threads,
        "frame": "640x480",
        "model": "paper preset 256², random weights, preprocessing celeba",
        "detail": args.detail,
        "detect_every": DETECT_EVERY,
        "frames": len(ours["total"]),
        "tracked": summary(ours),
        "baseline_detect_every_frame": summary(plain),
    }
    result["speedup"] = round(
        result["tracked"]["frames_per_second"]
        / result["baseline_detect_every_frame"]["frames_per_second"],
        2,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
