"""The one conversion between 8-bit pixels and the [-1, 1] range every network here works in.

The model is trained on `uint8 / 127.5 - 1` and its outputs are read back the same way; keeping
both directions in one place means training, evaluation and the editor can never disagree.
`to_images`, on every slider move, makes `to_pixels`'s levels in OpenCV, tested level for level
against it.
"""

import cv2
import numpy as np
import torch
from PIL import Image


def to_model_range(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 0…255 (any shape) → float −1…1."""
    return pixels.float().div_(127.5).sub_(1)


def to_pixels(batch: torch.Tensor) -> torch.Tensor:
    """float −1…1 → uint8 0…255, rounded to the nearest level (the inverse of `to_model_range`)."""
    return batch.add(1).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB (or L, gray) → 1×3×H×W (1×1×H×W) float in [-1, 1], channels-last (the layout
    the editor runs in)."""
    array = np.asarray(image, dtype=np.uint8)
    pixels = torch.from_numpy(array.reshape(*array.shape[:2], -1).copy()).permute(2, 0, 1)[None]
    return to_model_range(pixels).contiguous(memory_format=torch.channels_last)


def to_images(batch: torch.Tensor) -> list[Image.Image]:
    """B×3×H×W (or B×1×H×W, gray) in [-1, 1] → PIL RGB images: photos are RGB everywhere
    they are pasted, so a grayscale model's output becomes three equal channels.

    A float32 batch (a decoder's output) gets `to_pixels`'s levels, to the last one (tested),
    made in two OpenCV passes over the batch (x + 1, then × 127.5 rounded to the nearest even
    and saturated): torch's five passes took a quarter of a millisecond a face on every slider
    move."""
    values = batch.detach().cpu().float().permute(0, 2, 3, 1).contiguous().numpy()
    count, height, width, channels = values.shape  # channels-last already: no copy
    rows = values.reshape(count * height, width * channels)
    levels = cv2.addWeighted(cv2.add(rows, 1.0), 127.5, rows, 0.0, 0.0, dtype=cv2.CV_8U)
    pixels = levels.reshape(count, height, width, channels)
    if channels == 1:
        pixels = np.repeat(pixels, 3, axis=3)
    return [Image.fromarray(picture) for picture in pixels]
