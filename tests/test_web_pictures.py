"""The page's pictures (`fader.web_pictures`): what a slider move sends the browser."""

import base64
import io
import re

import numpy as np
from PIL import Image
from skimage import data as skimage_data

from fader.web_pictures import inline_crop


def painted(html: str) -> tuple[str, Image.Image, int]:
    """The <img>'s picture format, the picture, and the width the page shows it at."""
    kind, encoded = re.search(r'src="data:image/(\w+);base64,([^"]+)"', html).groups()
    width = int(re.search(r'width="(\d+)"', html).group(1))
    return kind, Image.open(io.BytesIO(base64.b64decode(encoded))), width


def test_a_small_crop_is_a_lossless_png_enlarged_pixel_for_pixel():
    digit = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32), np.uint8))
    kind, picture, width = painted(inline_crop(digit))
    assert kind == "png" and width == 192 and "pixelated" in inline_crop(digit)
    assert np.array_equal(np.asarray(picture), np.asarray(digit))


def test_a_face_sized_crop_is_a_jpeg_shown_at_its_own_size_within_a_few_levels():
    """A 256² crop goes as a JPEG (a tenth of the PNG's time on every move). The tolerance:
    JPEG at quality 95 without chroma subsampling moves a sharp photo's pixels by about a level
    and a half on average and by up to 7 at its sharpest edges (a decoded face is smoother);
    the download and the API's crop stay lossless PNGs."""
    face = Image.fromarray(skimage_data.astronaut()).resize((256, 256), Image.Resampling.BICUBIC)
    kind, picture, width = painted(inline_crop(face))
    assert kind == "jpeg" and width == 256 and picture.size == (256, 256)
    difference = np.abs(np.asarray(picture, int) - np.asarray(face, int))
    assert difference.mean() < 2 and np.percentile(difference, 99) <= 8
