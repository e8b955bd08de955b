"""A webcam-like clip the stream tests make: a real photo moving, then a stretch without a face.

The astronaut (`skimage.data.astronaut()`, public domain) slides and turns across a 640×480 frame
for `face_frames` frames; then `skimage.data.coffee()` (no face) fills `empty_frames` more.
`write_y4m` saves frames as the plain YUV4MPEG2 4:2:0 file Chromium's fake camera plays.
"""

from pathlib import Path

import cv2
import numpy as np
from skimage import data as skimage_data

WIDTH, HEIGHT = 640, 480


def moving_face(t: float) -> np.ndarray:
    """The astronaut at time t ∈ [0, 1]: shifted up to ±40 px and turned up to ±10°."""
    photo = skimage_data.astronaut()
    angle = 10.0 * np.sin(2 * np.pi * t)
    dx, dy = 40.0 * np.sin(np.pi * t) - 20.0, 15.0 * np.cos(2 * np.pi * t)
    face_centre = (210.0, 130.0)  # roughly where the face is in the 512² photo
    moved = cv2.getRotationMatrix2D(face_centre, angle, 0.9)
    moved[:, 2] += (WIDTH / 2 - face_centre[0] + dx, HEIGHT / 2 - face_centre[1] + dy)
    return cv2.warpAffine(photo, moved, (WIDTH, HEIGHT), borderMode=cv2.BORDER_REPLICATE)


def no_face() -> np.ndarray:
    return cv2.resize(skimage_data.coffee(), (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)


def clip(face_frames: int = 36, empty_frames: int = 12) -> list[np.ndarray]:
    """`face_frames` of the moving face, then `empty_frames` of a photo without one."""
    faces = [moving_face(i / max(1, face_frames - 1)) for i in range(face_frames)]
    return faces + [no_face()] * empty_frames


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 15) -> Path:
    """Frames (H×W×3 RGB, even sides) as an uncompressed YUV4MPEG2 4:2:0 file."""
    height, width = frames[0].shape[:2]
    with open(path, "wb") as file:
        file.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            file.write(b"FRAME\n")
            file.write(cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path
