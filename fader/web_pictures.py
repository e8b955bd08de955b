"""Pictures as a web page shows them: a small model's crop enlarged pixel for pixel, edits as
`<img>`s whose pictures travel inside the answer (`data:` URLs: no file written, no second
request before the browser can paint), and a sweep's strip labelled with its values.

Pixel work for the page, apart from the page's layout and wiring (`app.py`), which only passes
these pictures on.
"""

import base64
import io
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from fader.row_jpeg import RowCodedJpeg

SHOWN_SIDE = 192  # crops smaller than this are enlarged for the page, pixel for pixel
PREVIEW_QUALITY = 85  # JPEG quality of the edited photo's preview in the page
CROP_QUALITY = 95  # JPEG quality of a crop the page shows at its own size (a face's)
FRAME_QUALITY = 85  # JPEG quality of the live webcam's edited frames
# PNGs made on every move: zlib's fastest level with its run-length strategy (Z_RLE), lossless,
# faster than the level alone on a photo's crop and about as small
FAST_PNG = {"compress_level": 1, "compress_type": 3}


def enlargement(width: int) -> int:
    """The whole factor a crop `width` pixels wide is enlarged by to be readable (1: none)."""
    return 1 if width >= SHOWN_SIDE else -(-SHOWN_SIDE // width)


def shown(image: Image.Image | None) -> Image.Image | None:
    """A small model's crop enlarged by a whole factor with nearest neighbour: readable, and
    every pixel still the model's own (no blur made up by the browser's scaling)."""
    if image is None or (factor := enlargement(image.width)) == 1:
        return image
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def data_url(image: Image.Image, format: str, **options: Any) -> str:
    """`image` encoded as a `data:` URL, to send inside an event's message."""
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return encoded_url(buffer.getvalue(), format)


def encoded_url(picture: bytes, format: str) -> str:
    """An encoded picture's bytes as a `data:` URL."""
    return f"data:image/{format.lower()};base64,{base64.b64encode(picture).decode('ascii')}"


def inline_crop(crop: Image.Image) -> str:
    """The edited crop as an <img> at the model's own size. A small model's crop is a PNG
    (lossless, a few hundred bytes for the digits), enlarged by the browser as `shown` enlarges
    it: by a whole factor, without smoothing (`image-rendering: pixelated`). A crop shown at
    its own size (a 256² face) is a JPEG at `CROP_QUALITY` without chroma subsampling: a tenth
    of the PNG's time to make and a fifth of its bytes, on every move, and no visible difference
    at that quality."""
    factor = enlargement(crop.width)
    picture = (
        data_url(crop, "PNG", **FAST_PNG)
        if factor > 1
        else data_url(crop, "JPEG", quality=CROP_QUALITY, subsampling=0)  # colour kept sharp
    )
    return (
        f'<img src="{picture}" alt="The edited crop" '
        f'width="{crop.width * factor}" height="{crop.height * factor}" '
        'style="image-rendering: pixelated; max-width: 100%; height: auto; object-fit: contain">'
    )


class UneditedPreviews:
    """Each photo's preview as it was, row-coded once (`RowCodedJpeg`), for as long as the photo
    is held: a move's JPEG is then made again only in the rows its faces changed. It holds a
    twentieth of what the preview's pixels do (100 KB for a 658×768 photo), outside the photo
    store's budgets."""

    def __init__(self) -> None:
        # id(preview) → its JPEG, until the preview is freed (a PIL image compares by its pixels
        # and so cannot be a key itself); a finalizer runs before an id can be used again
        self.coded: dict[int, RowCodedJpeg] = {}

    def of(self, preview: Image.Image, shown: Callable[[Image.Image], Image.Image]) -> RowCodedJpeg:
        """`shown(preview)` row-coded, made on the photo's first move and reused after it."""
        key = id(preview)
        coded = self.coded.get(key)
        if coded is None:
            coded = self.coded[key] = RowCodedJpeg.of(shown(preview), PREVIEW_QUALITY)
            weakref.finalize(preview, self.coded.pop, key, None)
        return coded


def inline_photo(
    photo: Image.Image, unedited: RowCodedJpeg, boxes: Sequence[tuple[int, int, int, int]]
) -> str:
    """The edited photo's preview (at most 768 px a side) as an <img> of a JPEG; a small photo
    (a digit) enlarged as its crop is (`inline_crop`), not shown smaller than the crop. Only
    the rows of `boxes` (where the edit was pasted) are encoded: the rest of the JPEG is the
    `unedited` preview's, the same bytes as a whole encoding, for a fraction of the work."""
    factor = enlargement(photo.width)
    pixelated = "image-rendering: pixelated; " if factor > 1 else ""  # a downscale stays smooth
    jpeg = unedited.with_rows(photo, [(top, bottom) for _, top, _, bottom in boxes])
    return (
        f'<img src="{encoded_url(jpeg, "JPEG")}" '
        f'alt="The edited photo (preview)" width="{photo.width * factor}" '
        f'height="{photo.height * factor}" style="{pixelated}max-width: 100%; height: auto; '
        'object-fit: contain">'
    )


def labelled_strip(strip: Image.Image, alphas: Sequence[float], attribute: str) -> Image.Image:
    """The sweep's crops (a row per face) enlarged pixel for pixel to at least half a shown
    crop each, with the α of each column written under them."""
    factor = max(1, -(-SHOWN_SIDE // 2 // (strip.width // len(alphas))))
    strip = strip.resize((strip.width * factor, strip.height * factor), Image.Resampling.NEAREST)
    tile = strip.width // len(alphas)
    canvas = Image.new("RGB", (strip.width, strip.height + 24), "white")
    canvas.paste(strip, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, alpha in enumerate(alphas):
        text = f"{attribute} {alpha:.2g}" if i == 0 else f"{alpha:.2g}"
        draw.text((i * tile + 4, strip.height + 5), text, fill="black")
    return canvas


def inline_frame(frame: np.ndarray, edited: bool) -> str:
    """`frame` as an <img> of a JPEG data: URL; `data-edited` says whether a face was edited."""
    return (
        f'<img src="{data_url(Image.fromarray(frame), "JPEG", quality=FRAME_QUALITY)}" '
        f'data-edited="{int(edited)}" '
        'alt="The camera, edited" style="width: 100%">'
    )
