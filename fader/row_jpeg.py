"""A picture's JPEG made again only in the rows that changed.

A slider move changes the preview only inside the edited faces' boxes, often a third of its rows
or less, yet encoding the whole preview again was the largest pixel cost of a face's move after
its paste. A JPEG written with a restart marker after every row of MCUs (`restart_marker_rows`)
codes each such row on its own: the DC predictions start afresh at each marker and every row
ends on a byte. The rows a move did not touch are therefore the same bytes on every move. They
are encoded once (`RowCodedJpeg.of`); a move encodes only the bands of rows it changed and puts
them in their place (`with_rows`). The result is byte for byte the JPEG of the whole picture
encoded at once with the same settings (a test holds it to that).
"""

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

START_OF_SCAN = 0xDA
END_OF_IMAGE = b"\xff\xd9"
# Entropy-coded data escapes every 0xFF byte as 0xFF 0x00, so these two bytes are a marker.
RESTART = re.compile(rb"\xff[\xd0-\xd7]")

Rows = tuple[int, int]
"""Pixel rows top…bottom-1 of a picture."""


def encoded(image: Image.Image, quality: int) -> bytes:
    """`image` as a baseline JPEG at `quality`, 4:2:0 for colour, a restart after each MCU row."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, subsampling="4:2:0", restart_marker_rows=1)
    return buffer.getvalue()


def mcu_height(image: Image.Image) -> int:
    """Pixel rows per row of MCUs: 16 for colour (RGB) at 4:2:0, 8 for a gray picture (L)."""
    return 8 if image.mode == "L" else 16


def split(jpeg: bytes) -> tuple[bytes, list[bytes]]:
    """Our own encoder's JPEG as its header (start of image … the scan's header) and the
    entropy-coded bytes of each MCU row, without their restart markers."""
    at = 2  # after the start of image
    while True:
        if jpeg[at] != 0xFF:
            raise RuntimeError("Not a JPEG of markers as libjpeg writes them.")
        marker, length = jpeg[at + 1], int.from_bytes(jpeg[at + 2 : at + 4], "big")
        at += 2 + length
        if marker == START_OF_SCAN:
            break
    if not jpeg.endswith(END_OF_IMAGE):
        raise RuntimeError("A JPEG ends with its end-of-image marker.")
    return jpeg[:at], RESTART.split(jpeg[at : -len(END_OF_IMAGE)])


@dataclass(frozen=True)
class RowCodedJpeg:
    """A picture's JPEG kept as its header and one coded row of MCUs each."""

    header: bytes
    rows: tuple[bytes, ...]
    size: tuple[int, int]
    mode: str
    quality: int

    @classmethod
    def of(cls, image: Image.Image, quality: int) -> "RowCodedJpeg":
        if image.mode not in ("RGB", "L"):
            raise RuntimeError(f"A row-coded JPEG is of an RGB or L picture, not {image.mode}.")
        header, rows = split(encoded(image, quality))
        if len(rows) != -(-image.height // mcu_height(image)):
            raise RuntimeError("The encoder did not put a restart marker after each MCU row.")
        return cls(header, tuple(rows), image.size, image.mode, quality)

    def joined(self, rows: Sequence[bytes]) -> bytes:
        """The JPEG of these coded rows, under this picture's header."""
        parts = [self.header, rows[0]]
        for number, row in enumerate(rows[1:]):
            parts += (bytes((0xFF, 0xD0 + number % 8)), row)
        return b"".join([*parts, END_OF_IMAGE])

    def with_rows(self, image: Image.Image, changed: Sequence[Rows]) -> bytes:
        """The JPEG of `image`, which is this picture with only the pixel rows `changed`
        altered: those rows' MCU rows encoded again, the others reused."""
        if image.size != self.size or image.mode != self.mode:
            raise RuntimeError(f"{image.mode} {image.size} is not the picture this JPEG holds.")
        rows, height = list(self.rows), mcu_height(image)
        for first, last in mcu_bands(changed, height, len(rows)):
            band = image.crop((0, first * height, image.width, min(last * height, image.height)))
            _, coded = split(encoded(band, self.quality))
            if len(coded) != last - first:
                raise RuntimeError("The encoder did not put a restart marker after each MCU row.")
            rows[first:last] = coded
        return self.joined(rows)


def mcu_bands(changed: Sequence[Rows], height: int, count: int) -> list[tuple[int, int]]:
    """The MCU rows first…last-1 that hold the pixel rows `changed`, overlapping or touching
    bands merged (each band is one encoder call)."""
    bands: list[tuple[int, int]] = []
    for top, bottom in sorted(changed):
        if bottom <= top:
            continue
        first, last = max(top // height, 0), min(-(-bottom // height), count)
        if first >= last:
            continue
        if bands and first <= bands[-1][1]:
            bands[-1] = (bands[-1][0], max(last, bands[-1][1]))
        else:
            bands.append((first, last))
    return bands
