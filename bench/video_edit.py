"""Frames per second of `python -m fader.edit clip.mp4` at 640×480, and where the time goes.

    python bench/video_edit.py [--frames 48] [--threads 2]

The clip is made here: the astronaut (scikit-image) moving and turning over `--frames` frames at
640×480, 24 frames/s. The model has the paper's architecture at 256² with random weights (the
cost of a trained one). The whole `fader.video.edit_video` is timed end to end, against a plain
decode and H.264 re-encode of the same clip in the same run (the floor any editor pays); then
each stage is timed alone on the same frames. Prints one JSON object.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image
from skimage import data as skimage_data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("FADER_OFFLINE", "1")  # a benchmark must not download weights

from fader.model import FaderConfig, FaderNetwork
from fader.photo import centre_square
from fader.video import QUALITY, FrameEditor, edit_video, smooth_landmarks

SIZE, FPS = (640, 480), 24


def make_clip(path: Path, frames: int) -> None:
    photo = Image.fromarray(skimage_data.astronaut()).resize((1024, 1024))
    with av.open(str(path), "w") as output:
        stream = output.add_stream("libx264", rate=FPS, options=QUALITY)
        stream.width, stream.height, stream.pix_fmt = *SIZE, "yuv420p"
        for i in range(frames):
            angle, dx = 8 * np.sin(i / 6), 4 * i - 2 * frames
            turned = photo.rotate(angle, resample=Image.Resampling.BICUBIC, center=(480, 260))
            frame = turned.crop((160 + dx, 0, 160 + dx + SIZE[0], SIZE[1]))
            output.mux(stream.encode(av.VideoFrame.from_image(frame)))
        output.mux(stream.encode(None))


def transcode(source: Path, target: Path) -> None:
    """Decode and re-encode every frame unedited: the baseline."""
    with av.open(str(source)) as container, av.open(str(target), "w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=FPS, options=QUALITY)
        stream.width, stream.height, stream.pix_fmt = *SIZE, "yuv420p"
        for i, frame in enumerate(container.decode(video=0)):
            out = av.VideoFrame.from_image(frame.to_image())
            out.pts, out.time_base = i, Fraction(1, FPS)
            output.mux(stream.encode(out))
        output.mux(stream.encode(None))


def timed(function, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = FaderConfig(
        attributes=["Smiling"], image_size=256, init_fm=16, max_fm=512, n_layers=7,
        preprocessing="celeba",
    )  # fmt: skip
    editor = FrameEditor(FaderNetwork(config), {"Smiling": 1.5}, aligner="dlib")
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip.mp4"
        make_clip(clip, args.frames)
        editor.edit(centre_square(Image.new("RGB", SIZE), 256), None, {})  # warm-up
        baseline_s, _ = timed(transcode, clip, Path(folder) / "plain.mp4")
        total_s, result = timed(edit_video, clip, Path(folder) / "edited.mp4", editor)

        with av.open(str(clip)) as container:
            frames = [f.to_image() for f in container.decode(video=0)]
        detect_s, faces = timed(lambda: [editor.face(f) for f in frames])
        track = smooth_landmarks([None if f is None else f.landmarks for f in faces])
        values = editor.starting_values([])
        crops = [f.crop for f in faces if f is not None]
        model_s, _ = timed(lambda: [editor.decode(c, values) for c in crops])
        edit_s, _ = timed(
            lambda: [editor.edit(f, m, values) for f, m in zip(frames, track, strict=True)]
        )
    n = result.frames
    stages = {
        "find_landmarks (dlib, first pass)": detect_s,
        "encode_and_decode (the model)": model_s,
        "align_and_paste_back": max(edit_s - model_s, 0.0),
        "video_decode_and_encode (PyAV)": baseline_s,
    }
    stages["other (smoothing, conversions, the second decode)"] = max(
        total_s - sum(stages.values()), 0.0
    )
    print(
        json.dumps(
            {
                "frames": n,
                "frame_size": list(SIZE),
                "faces_found": result.edited,
                "threads": args.threads,
                "frames_per_second": round(n / total_s, 2),
                "plain_transcode_frames_per_second": round(n / baseline_s, 1),
                "edit_cost_over_transcode": round(total_s / baseline_s, 1),
                "seconds_per_frame": {k: round(v / n, 4) for k, v in stages.items()},
                "share_of_the_edit": {k: round(v / total_s, 3) for k, v in stages.items()},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
