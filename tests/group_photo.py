"""A group photo made of real package photos, for the tests that edit every face."""

from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image
from skimage import data as skimage_data


def group_photo() -> Image.Image:
    """Two package photos side by side: the astronaut (smaller) and Grace Hopper."""
    grace_hopper = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    canvas = Image.new("RGB", (1200, 700), "white")
    canvas.paste(Image.fromarray(skimage_data.astronaut()).resize((384, 384)), (0, 150))
    canvas.paste(grace_hopper.convert("RGB"), (600, 50))
    return canvas


def changed(edited: Image.Image, original: Image.Image, box: tuple[float, ...]) -> float:
    x1, y1, x2, y2 = (int(v) for v in box)
    difference = np.abs(np.asarray(edited, float) - np.asarray(original, float))
    return float(difference[y1:y2, x1:x2].mean())
