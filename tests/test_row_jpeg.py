"""A preview's JPEG made again only in the rows a move changed (`fader.row_jpeg`): the bytes of
the whole picture's encoding, whichever rows change, in colour and in gray."""

import gc
import io

import numpy as np
import pytest
from PIL import Image

from fader.row_jpeg import RowCodedJpeg, encoded, mcu_bands
from fader.web_pictures import UneditedPreviews

QUALITY = 85


def noise(size: tuple[int, int], mode: str, seed: int = 0) -> Image.Image:
    width, height = size
    rng = np.random.default_rng(seed)
    channels = (height, width, 3) if mode == "RGB" else (height, width)
    return Image.fromarray(rng.integers(0, 256, channels, dtype=np.uint8), mode)


def with_rows_changed(image: Image.Image, changed: list[tuple[int, int]]) -> Image.Image:
    """`image` with a stripe of each band of rows inverted (the rest of each row as it was)."""
    pixels = np.asarray(image).copy()
    for top, bottom in changed:
        pixels[top:bottom, 3:29] = 255 - pixels[top:bottom, 3:29]
    return Image.fromarray(pixels, image.mode)


@pytest.mark.parametrize(
    "mode,size",
    [("RGB", (658, 768)), ("RGB", (101, 77)), ("L", (300, 203))],
    ids=["preview", "odd-sized", "gray"],
)
@pytest.mark.parametrize(
    "changed",
    [
        [],
        [(0, 1)],
        [(15, 17)],  # across two MCU rows' edge (16 px in colour, the second of two in gray)
        [(70, 77)],  # the last rows: a partial MCU row in every size here
        [(20, 60), (50, 90), (8, 9)],  # overlapping and touching bands, out of order
        [(0, 10_000)],
    ],
    ids=["none", "first", "an-edge", "last", "several", "all"],
)
def test_a_picture_with_some_rows_changed_is_the_whole_pictures_jpeg(mode, size, changed):
    unedited = noise(size, mode)
    coded = RowCodedJpeg.of(unedited, QUALITY)
    edited = with_rows_changed(unedited, changed)
    assert coded.with_rows(edited, changed) == encoded(edited, QUALITY)
    decoded = Image.open(io.BytesIO(encoded(edited, QUALITY)))
    assert decoded.size == size and decoded.mode == mode


def test_rows_changed_but_not_said_keep_the_unedited_bytes():
    """Only the rows said to change are encoded again: the rest is the unedited picture's (the
    reason an edit must say every box it pasted into)."""
    unedited = noise((64, 64), "RGB")
    coded = RowCodedJpeg.of(unedited, QUALITY)
    edited = with_rows_changed(unedited, [(40, 50)])
    assert coded.with_rows(edited, []) == encoded(unedited, QUALITY)
    assert coded.with_rows(edited, [(0, 16)]) != encoded(edited, QUALITY)
    assert coded.with_rows(edited, [(40, 50)]) == encoded(edited, QUALITY)


def test_only_rgb_and_gray_pictures_are_row_coded():
    with pytest.raises(RuntimeError, match="RGB or L picture, not RGBA"):
        RowCodedJpeg.of(Image.new("RGBA", (32, 32)), QUALITY)


def test_another_picture_is_refused():
    coded = RowCodedJpeg.of(noise((64, 48), "RGB"), QUALITY)
    with pytest.raises(RuntimeError, match="is not the picture"):
        coded.with_rows(noise((64, 64), "RGB"), [(0, 8)])
    with pytest.raises(RuntimeError, match="is not the picture"):
        coded.with_rows(noise((64, 48), "L"), [(0, 8)])


def test_bands_are_the_mcu_rows_that_hold_the_changed_rows_merged():
    assert mcu_bands([(0, 1)], 16, 48) == [(0, 1)]
    assert mcu_bands([(15, 17)], 16, 48) == [(0, 2)]
    assert mcu_bands([(40, 50), (0, 16), (16, 20)], 16, 48) == [(0, 4)]
    assert mcu_bands([(100, 120), (0, 8)], 8, 20) == [(0, 1), (12, 15)]
    assert mcu_bands([(760, 900), (5, 5)], 16, 48) == [(47, 48)]


def test_an_unedited_preview_is_coded_once_and_let_go_with_it():
    previews = UneditedPreviews()
    preview = noise((96, 80), "RGB")
    shown: list[tuple[int, int]] = []

    def show(image: Image.Image) -> Image.Image:
        shown.append(image.size)
        return image

    first = previews.of(preview, show)
    assert previews.of(preview, show) is first and shown == [(96, 80)]
    assert first.joined(first.rows) == encoded(preview, QUALITY)
    del preview
    gc.collect()
    assert previews.coded == {}
