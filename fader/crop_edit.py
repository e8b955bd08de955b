"""The crop edit: the one code that edits crops with a Fader model and puts them back.

Every surface calls it: the editor (the app and `python -m fader.edit` photos), the video editor
and the live webcam stream.

    x = the crops as the model reads them        (one channel for a grayscale model)
    z = E(x)                                      once per crop
    edited = D(z, y) + s·(x − D(z, y₀))           per set of slider values y
    photo = paste(photo, edited)                  the centre square, or each face warped back

A decoder rebuilds a crop from a small latent, so it is blurrier than the photo: the residual
x − D(z, y₀), at the photo's starting values y₀, is the detail it did not rebuild, and s ∈ [0, 1]
("keep photo detail") adds it back. At y = y₀ and s = 1 the edit is the photo itself.
"""

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image

from fader.align import AlignedFace, PasteSite, paste_site, pasted_face
from fader.model import FaderConfig, FaderNetwork
from fader.photo import SquareSite, pasted_square, square_site
from fader.pixels import to_images, to_tensor

Decode = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class EncodedCrops:
    latents: torch.Tensor  # z = E(x), one per crop
    residuals: torch.Tensor | None  # x − D(z, y₀); None when no detail is kept


def detail_strength(config: FaderConfig, detail: float | None) -> float:
    """`detail` checked, or the model's default "keep photo detail" when None."""
    strength = config.default_detail if detail is None else float(detail)
    if not 0.0 <= strength <= 1.0:
        raise ValueError(
            f"Keep photo detail must be between 0 and 1 (0: the model's output alone; 1: all the "
            f"photo's detail the model does not rebuild), not {detail}."
        )
    return strength


def model_input(model: FaderNetwork, crops: Sequence[Image.Image]) -> torch.Tensor:
    """The crops as one n×C×S×S batch in [-1, 1], channels-last; gray for a 1-channel model."""
    gray = model.config.image_channels == 1
    x = torch.cat([to_tensor(crop.convert("L") if gray else crop) for crop in crops])
    return x.contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def encode_crops(
    model: FaderNetwork,
    crops: Sequence[Image.Image],
    start: Mapping[str, float | Mapping[str, float]] | None,
) -> EncodedCrops:
    """Every crop encoded in one batch; with the starting values `start` (y₀), the residuals
    that "keep photo detail" adds back (None: the caller keeps no detail)."""
    x = model_input(model, crops)
    z = model.encode(x)
    residuals = None
    if start is not None:
        residuals = x - model.decode(z, model.slider_channels(start, batch_size=len(crops)))
    return EncodedCrops(z, residuals)


@torch.inference_mode()
def decode_crops(
    model: FaderNetwork,
    encoded: EncodedCrops,
    alphas: Sequence[Mapping[str, float | Mapping[str, float]]],
    faces: Sequence[int],
    detail: float,
    decode: Decode | None = None,
) -> list[list[Image.Image]]:
    """For each set of slider values, the edited crop of each of `faces` (RGB; gray for a
    1-channel model): every decode in one batch, through `decode` (default: the model's)."""
    if detail and encoded.residuals is None:
        raise ValueError("Keeping photo detail needs the crops encoded with their start values.")
    y = torch.cat([model.slider_channels(values) for values in alphas])
    y = y.repeat_interleave(len(faces), dim=0)
    z = encoded.latents[list(faces)].repeat(len(alphas), 1, 1, 1)
    edited = (decode or model.decode)(z, y)
    if detail:  # into the decoder's own output, crop by crop (no gathered copy of the residuals)
        for row, face in zip(edited, itertools.cycle(faces)):
            row.add_(encoded.residuals[face], alpha=detail)
    crops = to_images(edited)
    return [crops[i : i + len(faces)] for i in range(0, len(crops), len(faces))]


Site = PasteSite | SquareSite
"""Where one edited crop goes back into a photo: over a face, or over the centre square."""


def paste_sites(
    photo_size: tuple[int, int],
    faces: Sequence[AlignedFace],
    original: Image.Image,
    preview: bool = False,
) -> tuple[Site, ...]:
    """What every paste into a photo of `photo_size` reuses: a site per face (`faces`), or, for
    a whole-image model (no faces), the centre square that `original` (the crop as it was) was
    cut from. A `preview`'s sites are kept for its moves (`paste_site`'s `kept`), and its faces
    are warped back bilinearly, several times faster than the bicubic an export gets and, at
    the preview's scale (a crop enlarged about twice), much alike; a centre square is resized
    bicubic in both: a resize is cheap, and a small model's crop (a 32 px digit) is enlarged up
    to 24 times, where bilinear shows its grid."""
    if not faces:
        return (square_site(photo_size, original),)
    kernel = cv2.INTER_LINEAR if preview else cv2.INTER_CUBIC
    return tuple(paste_site(photo_size, face, kernel, kept=preview) for face in faces)


def paste_crops(
    photo: Image.Image,
    edited: Sequence[Image.Image],
    faces: Sequence[AlignedFace],
    original: Image.Image,
    detail: float,
) -> Image.Image:
    """`photo` with the edited crops put back: each over its face (`faces`, one per crop), or,
    for a whole-image model (no faces), the one crop over the centre square it was cut from
    (`original`, the crop as it was)."""
    return paste_at(photo, edited, paste_sites(photo.size, faces, original), detail)


def paste_at(
    photo: Image.Image, edited: Sequence[Image.Image], sites: Sequence[Site], detail: float
) -> Image.Image:
    """`photo` with each edited crop put back at its site (`paste_sites` for its size), in
    turn: a face whose region overlaps an earlier one's is blended over that one's paste. A
    paste over the whole photo (a square photo's centre square) is the picture itself, in the
    photo's mode: no copy of the pixels it replaces."""
    result, pasted = photo, []
    for crop, site in zip(edited, sites, strict=True):
        if isinstance(site, SquareSite):
            patch = pasted_square(site, np.asarray(crop), detail, photo)
        elif any(overlap(site.box, box) for box in pasted):  # over an earlier face's paste
            patch = pasted_face(site, np.asarray(crop, np.float32), detail, result)
        else:  # a kept site pastes over its base of `photo`'s own region, made once
            base = site.base(photo, detail) if site.kept else None
            patch = pasted_face(site, np.asarray(crop, np.float32), detail, photo, base)
        if patch.size == photo.size:
            result = patch.convert(photo.mode) if patch.mode != photo.mode else patch
        else:
            result = photo.copy() if result is photo else result
            result.paste(patch, site.box[:2])
        pasted.append(site.box)
    return photo.copy() if result is photo else result


def overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Whether two boxes (x0, y0, x1, y1) share a pixel."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
