"""Whole-image models (digits, scenes) paste their edit into the photo's centre square.

Face models paste through the alignment (tests/test_align.py); here the edited photo of a model
without alignment must show the edited crop, resized, at the centre, and the rest untouched.
"""

import numpy as np
import pytest
from PIL import Image

from fader.editor import Editor
from fader.library import load_model
from fader.photo import paste_centre_square

DIGITS_SEVEN = "assets/examples/digits/seven.png"


def wide_photo_around(digit: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The digit at the centre of a wider photo whose margins are a pattern of their own."""
    width, height = size
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    side = min(width, height)
    photo.paste(digit.convert("RGB").resize((side, side)), ((width - side) // 2, 0))
    return photo


def difference(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean())


def test_pasting_a_centre_square_puts_the_crop_there_and_keeps_the_margins():
    photo = Image.new("RGB", (300, 200), (10, 20, 30))
    edited = Image.new("RGB", (32, 32), (200, 100, 50))
    pasted = paste_centre_square(photo, edited)
    assert pasted.size == (300, 200)
    pixels = np.asarray(pasted)
    assert (pixels[:, 50:250] == (200, 100, 50)).all(), "the centre 200×200 square is the crop"
    assert (pixels[:, :50] == (10, 20, 30)).all() and (pixels[:, 250:] == (10, 20, 30)).all()
    assert np.asarray(photo)[0, 100].tolist() == [10, 20, 30], "the input photo is not changed"


@pytest.mark.parametrize("full_resolution", [False, True], ids=["preview", "export"])
def test_a_digit_edit_is_in_the_edited_photo(full_resolution):
    editor = Editor(load_model("digits"))
    photo = wide_photo_around(Image.open(DIGITS_SEVEN), (1200, 800))
    photo_id = editor.load(photo)
    seven = editor.edit(photo_id, {"seven": 1.0}, full_resolution=full_resolution)
    three = editor.edit(photo_id, {"seven": 0.0, "three": 1.0}, full_resolution=full_resolution)
    assert difference(seven.crop, three.crop) > 10, "the two edits differ visibly"

    expected_size = (1200, 800) if full_resolution else (768, 512)
    for result in (seven, three):
        assert result.photo.size == expected_size
        width, height = result.photo.size
        left = (width - height) // 2
        centre = result.photo.crop((left, 0, left + height, height))
        resized = result.crop.resize(centre.size, Image.Resampling.LANCZOS)
        assert difference(centre, resized) < 1, "the centre square holds the edited crop"
        source = photo if full_resolution else editor.photo(photo_id).preview
        margins = (0, 0, left, height)
        assert np.array_equal(
            np.asarray(result.photo.crop(margins)), np.asarray(source.crop(margins))
        ), "outside the square the photo is as it was"
