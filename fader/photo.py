"""Load whatever a user uploads into one 8-bit RGB PIL image, or say clearly why not.

Photos arrive as paths, bytes, file objects, PIL images or numpy arrays, in any PIL mode, often
with an EXIF orientation tag, sometimes animated, truncated or absurdly large. Everything after
this module can then assume an upright RGB image of sane size.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
from dataclasses import dataclass
from typing import IO

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 50_000_000
"""Largest image decoded at full size (50 MP: an 8-bit RGB copy is 150 MB). JPEGs above it are
decoded at 1/2, 1/4 or 1/8 scale by the JPEG decoder itself; other formats are refused."""

MIN_SIDE = 32
"""Below this a face cannot hold enough pixels to align or edit."""

MAX_BYTES = 25 * 2**20
"""Largest file read from any route (a file, bytes, a `data:` URL): checked from its length
before anything is read or decoded. A JPEG of a few MB is plenty for a photo."""

MAX_FRAME_SIDE = 1920
"""Camera frames are shrunk to this many pixels on their longer side before any face work:
more costs detection time and memory without a better edit."""

PhotoSource = (
    str | os.PathLike | bytes | bytearray | memoryview | IO[bytes] | Image.Image | np.ndarray
)


class BadPhoto(ValueError):
    """The input cannot be read as a photo; the message says why and what to do."""


def load_photo(
    source: PhotoSource,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
    max_bytes: int = MAX_BYTES,
) -> Image.Image:
    """Return `source` as an upright 8-bit RGB image (transparency composited on white).

    `min_side` guards face photos; models of small images (digits) pass a smaller one. A file
    or bytes over `max_bytes` are refused by their length, pixels over `max_pixels` from the
    header: nothing is decoded first.
    """
    check_size(source, max_bytes)
    image = _open(source)
    if image.width * image.height > max_pixels:
        _shrink_while_decoding(image, max_pixels)
    if getattr(image, "is_animated", False):
        image.seek(0)
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise BadPhoto("The image is damaged or cut short; try saving it again.") from error
    image = _upright(image)
    rgb = _to_rgb(image, owned=not isinstance(source, Image.Image | np.ndarray))
    if min(rgb.size) < min_side:
        raise BadPhoto(
            f"The image is {rgb.width}×{rgb.height} pixels: too small to edit. Use one at "
            f"least {min_side} pixels on each side."
        )
    return rgb


def load_frame(source: PhotoSource, max_side: int = MAX_FRAME_SIDE) -> np.ndarray:
    """A camera frame through the same gate as a photo, as H×W×3 uint8 RGB at most `max_side`
    pixels on its longer side."""
    frame = load_photo(source)
    if max(frame.size) > max_side:
        frame = ImageOps.contain(frame, (max_side, max_side), Image.Resampling.BILINEAR)
    return np.asarray(frame)


def check_size(source: PhotoSource, max_bytes: int = MAX_BYTES) -> None:
    """Refuse a file or bytes longer than `max_bytes` by its length alone."""
    if isinstance(source, str | os.PathLike) and os.path.isfile(source):
        size = os.path.getsize(source)
    elif isinstance(source, bytes | bytearray | memoryview):
        size = len(source)
    else:
        return  # already in memory, or a stream whose length is unknown
    if size > max_bytes:
        raise BadPhoto(too_big_message(size, max_bytes))


def too_big_message(size: int, max_bytes: int = MAX_BYTES) -> str:
    return (
        f"This file is {size / 2**20:.0f} MB; photos up to {max_bytes // 2**20} MB are "
        "accepted. Save it smaller (a JPEG of a few MB is plenty) and try again."
    )


def bytes_from_data_url(url: str, max_bytes: int = MAX_BYTES) -> bytes:
    """A base64 `data:` URL's bytes, in memory, refused by its length before it is decoded."""
    header, _, payload = url.partition(",")
    if not header.endswith(";base64"):
        raise BadPhoto("Send the photo as a base64 data: URL or as an uploaded file.")
    if len(payload) * 3 // 4 > max_bytes:
        raise BadPhoto(too_big_message(len(payload) * 3 // 4, max_bytes))
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error:
        raise BadPhoto("This data: URL is not valid base64.") from None


def _open(source: PhotoSource) -> Image.Image:
    """Open lazily: only the header is read, so the size can be checked before decoding."""
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, bytes | bytearray | memoryview):
        source = io.BytesIO(bytes(source))
    try:
        return Image.open(source)
    except UnidentifiedImageError as error:
        raise BadPhoto(
            "This file is not an image we can read (empty, damaged or an unsupported format). "
            "Upload a JPEG, PNG, WebP, GIF, BMP or TIFF photo."
        ) from error
    except Image.DecompressionBombError as error:
        raise BadPhoto(too_large_message()) from error


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise BadPhoto(f"An image array must be H×W, H×W×3 or H×W×4, not {array.shape}.")
    if array.dtype != np.uint8:
        raise BadPhoto(f"An image array must be uint8 (0–255), not {array.dtype}.")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    return Image.fromarray(np.ascontiguousarray(array))


def _shrink_while_decoding(image: Image.Image, max_pixels: int) -> None:
    """Let the JPEG decoder skip detail (DCT scaling) instead of allocating a huge bitmap."""
    if image.format == "JPEG":
        for factor in (2, 4, 8):
            if image.width * image.height <= max_pixels * factor * factor:
                image.draft(image.mode, (image.width // factor, image.height // factor))
                return
    raise BadPhoto(too_large_message(image.size))


def too_large_message(size: tuple[int, int] | None = None) -> str:
    """What to tell someone whose image has more pixels than we decode (the app says it too);
    one limit whatever refused it, our header check or PIL's own."""
    pixels = f" ({size[0]}×{size[1]} pixels)" if size else ""
    return (
        f"The image is too large to process{pixels}. "
        f"Resize it below {MAX_PIXELS // 1_000_000} megapixels and try again."
    )


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation, as a phone's gallery shows the photo; broken EXIF is ignored."""
    try:
        return ImageOps.exif_transpose(image)
    except (OSError, ValueError, TypeError, KeyError, SyntaxError):
        return image


def _to_rgb(image: Image.Image, owned: bool = False) -> Image.Image:
    """`image` in RGB; an `owned` one (decoded here: no caller holds its pixels) that is RGB
    already is returned as it is rather than copied (36 MB at 12 megapixels)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return Image.fromarray(_high_depth_to_uint8(image)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if owned and image.mode == "RGB":
        return image
    try:
        return image.convert("RGB")
    except ValueError as error:
        raise BadPhoto(f"Images in PIL mode {image.mode!r} are not supported ({error}).") from error


def _high_depth_to_uint8(image: Image.Image) -> np.ndarray:
    """16-bit and 32-bit gray images: map their full range to 0–255 instead of clipping."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        top = 1.0 if values.max(initial=0.0) <= 1.0 else 255.0
    else:
        top = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
    return np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)


def background_of(image: Image.Image) -> str:
    """ "dark" or "light": the median brightness of the centre square's edge, where a picture of
    one thing on a plain ground (a digit on paper, or on a screen) shows its ground."""
    left, top, right, bottom = centre_square_box(image.size)
    gray = np.asarray(image.convert("L").crop((left, top, right, bottom)))
    edge = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return "light" if np.median(edge) > 127 else "dark"


def is_gray(image: Image.Image) -> bool:
    """Whether every pixel's three channels are equal: a gray picture, whatever its mode."""
    if image.mode in ("1", "L", "I", "F"):
        return True
    pixels = np.asarray(image.convert("RGB"))
    return bool(
        (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    )


def centre_square_box(size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The largest centred square of a width×height image, as a PIL box."""
    width, height = size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def centre_square(image: Image.Image, size: int) -> Image.Image:
    """The authors' crop: CelebA's 178×218 frame → rows 20…198 (its centre square) → size².

    One Lanczos resample straight from the crop box, as the authors resized with Lanczos.
    Models trained without face alignment see their inputs through this.
    """
    return image.resize((size, size), Image.Resampling.LANCZOS, centre_square_box(image.size))


def paste_centre_square(
    photo: Image.Image,
    edited: Image.Image,
    crop: Image.Image | None = None,
    detail: float = 0.0,
) -> Image.Image:
    """Put an edited centre-square crop back at the photo's resolution.

    `edited` holds `detail` times the photo's `crop` (see `fader.align.paste_back`): that part
    is taken from the photo's own square instead, at its resolution. Pasting into the same
    photo again and again (a slider's moves) keeps a `SquareSite` instead.
    """
    if detail and crop is None:
        raise ValueError("paste_centre_square needs the photo's crop to keep its detail.")
    site = square_site(photo.size, crop)
    result = photo.copy()
    result.paste(pasted_square(site, np.asarray(edited), detail, photo), site.box[:2])
    return result


@dataclass(frozen=True)
class SquareSite:
    """Where an edited centre-square crop goes back into a photo of one size, with what every
    paste there reuses: the square's box and the crop's pixels as floats."""

    box: tuple[int, int, int, int]  # the photo's centre square, a PIL box
    original: np.ndarray | None  # the crop as it was, float32 (None: no detail is kept)

    @property
    def nbytes(self) -> int:
        return 0 if self.original is None else self.original.nbytes


def square_site(photo_size: tuple[int, int], crop: Image.Image | None) -> SquareSite:
    """The `SquareSite` of a photo of `photo_size` whose centre square was cut as `crop`."""
    original = None if crop is None else np.asarray(crop, np.float32)
    return SquareSite(centre_square_box(photo_size), original)


def pasted_square(
    site: SquareSite, edited: np.ndarray, detail: float, photo: Image.Image
) -> Image.Image:
    """`photo`'s centre square with `edited` (the crop's 8-bit levels, holding `detail` times
    the crop) resized onto it: all channels in one resample, bicubic (area-averaged when
    shrinking), and the photo's own pixels there for the detail. Enlarged with no detail kept,
    the levels are resized as 8 bits (OpenCV's fixed-point kernel, many times faster than the
    float one: BENCHMARKS.md; its picture to a level, tested); otherwise as floats (its 8-bit
    area kernel rounds halves up). A gray change (a gray model's edit with no detail kept, or
    of a gray photo: three equal channels) is resized as one channel, a third of the work; its
    sums run in another order, so a few levels in a million move by one. With no detail kept,
    or into an L photo, it comes back gray (`Image.paste` gives it the photo's mode)."""
    side = site.box[2] - site.box[0]
    shrinking = side < edited.shape[0]
    if detail:
        change = np.subtract(edited, detail * site.original, dtype=np.float32)
    else:
        change = edited.astype(np.float32) if shrinking else edited
    gray = all(np.array_equal(change[..., 0], change[..., i]) for i in (1, 2))
    kernel = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    square = cv2.resize(change[..., 0] if gray else change, (side, side), interpolation=kernel)
    if detail:
        if gray and photo.mode != "L":  # an L photo (a gray model's preview of one): one channel
            square = cv2.cvtColor(square, cv2.COLOR_GRAY2RGB)
        square += detail * np.asarray(photo.crop(site.box), np.float32)
    return Image.fromarray(square if square.dtype == np.uint8 else to_uint8(square))


def to_uint8(values: np.ndarray) -> np.ndarray:
    """float32 pixel values as uint8: rounded to the nearest, ties to even (as `np.rint`), and
    clipped to 0…255, in one pass (OpenCV's saturating cast) where numpy's rint, clip and cast
    take three, each many times slower."""
    return cv2.addWeighted(values, 1.0, values, 0.0, 0.0, dtype=cv2.CV_8U)
