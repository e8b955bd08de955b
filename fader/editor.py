"""Edit photos with a Fader model: prepare and encode a photo once, then decode per slider move.

The encoder runs once per photo (its latents are kept in a per-session `PhotoStore`), so moving
a slider costs one decoder pass plus the paste-back: the hot path of the app. Every face of a
group photo is aligned and encoded once, in one batch; an edit decodes the faces asked for in one
batch and pastes them all back into one photo. Nothing here knows about Gradio; the app and
`gradio_client` users share this code. A `session` names whose photo it is (the app passes
Gradio's session hash; a script can leave it empty).

A decoder rebuilds the crop from a small latent, so it is blurrier than the photo. The editor
therefore adds back what it could not rebuild: edited = D(z, y) + s·(x − D(z, y₀)), with y₀
the sliders' starting values and s ∈ [0, 1] "keep photo detail" (the model's default, or the
caller's). The residual x − D(z, y₀) is computed once per face; at y = y₀ and s = 1 the edit is
the photo itself. A strong edit at s = 1 keeps the old shape showing through (a swapped digit
keeps its old strokes), which is why whole-image models default to s = 0.
"""

import hashlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps

from fader.align import AlignedFace, faces_in, largest_face, rescaled
from fader.attributes import neutral_values, values_read, with_values
from fader.batching import DecodeBatcher
from fader.classifier import Classifier
from fader.crop_edit import (
    EncodedCrops,
    Site,
    decode_crops,
    detail_strength,
    encode_crops,
    model_input,
    paste_at,
    paste_sites,
)
from fader.model import FaderNetwork
from fader.photo import PhotoSource, background_of, centre_square, is_gray, load_photo
from fader.photo_store import PhotoStore, StoreLimits

PREVIEW_SIDE = 768  # live edits paste onto a copy this large; exports use the full photo
MAX_FACES = 16  # faces prepared per photo, largest first: a crowd must not fill the store
INVERTED_NOTE = (
    "This model was trained on pictures with a {} background: the photo is edited inverted "
    "and shown inverted back."
)


@dataclass(frozen=True)
class PreparedPhoto:
    """A photo as the editor keeps it: every face aligned (or the centre square) and encoded
    once, in one batch; index 0 is the largest face."""

    photo: Image.Image  # upright RGB original, full resolution
    # the photo at most PREVIEW_SIDE on a side, for live edits: L for a gray model's gray photo
    preview: Image.Image
    crops: tuple[Image.Image, ...]  # what the model sees, image_size², one per face
    encoded: EncodedCrops  # z per crop, and x − D(z, y₀): the detail the decoder does not rebuild
    faces: tuple[AlignedFace, ...]  # the alignments, for paste-back; () for whole-image models
    preview_faces: tuple[AlignedFace, ...]  # the same alignments on `preview`
    preview_sites: tuple[Site, ...]  # where each face (or the centre square) goes in `preview`
    note: str  # what the user should know ("3 faces found: …")
    # what the classifier reads from the largest face, else neutral; a slider group's values
    # as a dict of its categories
    slider_start: dict[str, float | dict[str, float]]
    # whether the photo was inverted for the model (dark on light for a model trained on light
    # on dark): every edit is inverted back before it is shown
    inverted: bool = False
    # the photo has no colour: a gray model's edit of it is given back gray (a colour photo
    # keeps its colour around the gray edit)
    gray: bool = False

    @property
    def crop(self) -> Image.Image:
        """The largest face's crop (the centre square for whole-image models)."""
        return self.crops[0]

    @property
    def face(self) -> AlignedFace | None:
        """The largest face's alignment; None for whole-image models."""
        return self.faces[0] if self.faces else None

    @property
    def nbytes(self) -> int:
        """Memory held by the pixels and tensors (what the store's budgets count)."""
        images = (self.photo, self.preview, *self.crops)
        # PIL holds an RGB pixel in 4 bytes (a 12 MP photo is 48 MB, not 36)
        per_pixel = [4 if len(image.getbands()) >= 3 else len(image.getbands()) for image in images]
        pixels = sum(i.width * i.height * b for i, b in zip(images, per_pixel, strict=True))
        tensors = (self.encoded.latents, self.encoded.residuals)
        sites = sum(site.nbytes for site in self.preview_sites)
        return pixels + sites + sum(t.numel() * t.element_size() for t in tensors if t is not None)


@dataclass(frozen=True)
class EditResult:
    crops: list[Image.Image]  # the edited crops, one per face edited, largest first
    photo: Image.Image
    # where `photo` (the preview, or the full photo for an export, in its own pixels) was pasted
    # into, (left, top, right, bottom) each: the rest of it is the photo as it was
    boxes: tuple[tuple[int, int, int, int], ...]

    @property
    def crop(self) -> Image.Image:
        return self.crops[0]


Faces = str | Sequence[int]
"""Which faces to edit: "all", "largest", or face numbers (0 is the largest)."""


def preview_of(photo: Image.Image) -> Image.Image:
    if max(photo.size) <= PREVIEW_SIDE:
        return photo
    preview = photo.copy()
    preview.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.LANCZOS)
    return preview


def content_key(photo: Image.Image) -> str:
    """Same pixels, same key: how sessions that upload one photo share its encoding."""
    digest = hashlib.blake2b(photo.tobytes(), digest_size=16)
    digest.update(repr(photo.size).encode())
    return digest.hexdigest()


class Editor:
    """Thread-safe: Gradio runs handlers for several users at once on one Editor.

    The model is switched to eval mode and channels-last layout (in place): on CPU the decoder's
    transposed convolutions run about 25% faster that way.
    """

    def __init__(
        self,
        model: FaderNetwork,
        aligner: str = "auto",
        classifier: Classifier | None = None,
        limits: StoreLimits | None = None,
    ):
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.classifier = classifier.eval() if classifier is not None else None
        self.aligner = aligner
        self.photos: PhotoStore[PreparedPhoto] = PhotoStore(limits)
        self.decoder = DecodeBatcher(self._decode_batch)  # concurrent moves: one batch
        self._preparing: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    @property
    def attributes(self) -> list[str]:
        return self.model.attributes

    @property
    def aligns_faces(self) -> bool:
        return self.model.config.aligns_faces

    def load(self, image: PhotoSource, session: str = "") -> str:
        """Prepare and encode `image` for `session`; return the photo's id in that session.

        The same content is encoded once: again in the same session it returns the same id, and
        in another session it reuses the encoding under a new id.
        """
        return self.load_prepared(image, session)[0]

    def load_prepared(self, image: PhotoSource, session: str = "") -> tuple[str, PreparedPhoto]:
        """`load`, also returning the prepared photo itself: reading it back by its id could
        find it already evicted by other sessions' uploads."""
        photo = load_photo(image, min_side=32 if self.aligns_faces else 8)
        key = content_key(photo)
        with self._locks_lock:  # one preparation per content at a time: a page's upload fires
            same_photo = self._preparing.setdefault(key, threading.Lock())  # several events
        with same_photo:
            known = self.photos.find(session, key)
            if known is None:
                prepared = self.photos.shared(key) or self._prepare(photo)
                known = self.photos.add(session, key, prepared), prepared
        with self._locks_lock:
            if not same_photo.locked():
                self._preparing.pop(key, None)
        return known

    def _prepare(self, photo: Image.Image) -> PreparedPhoto:
        size = self.model.config.image_size
        inverted = self.inverts(photo)
        note = INVERTED_NOTE.format(self.model.config.background) if inverted else ""
        photo = ImageOps.invert(photo) if inverted else photo
        preview = preview_of(photo)
        faces: tuple[AlignedFace, ...] = ()
        if self.aligns_faces:
            found = faces_in(photo, size, self.aligner)
            largest_face(found)  # a clear NoFaceFound when there is none
            faces = tuple(found[:MAX_FACES])
            crops = tuple(face.crop for face in faces)
            if len(found) > MAX_FACES:
                note = f"{len(found)} faces found: the {MAX_FACES} largest can be edited."
            elif len(found) > 1:
                note = f"{len(found)} faces found: all are edited unless some are picked."
        else:
            crops = (centre_square(photo, size),)
        start = neutral_values(self.model.config)
        if self.classifier is not None:
            read = self.classifier.read(model_input(self.model, crops[:1]))[0].tolist()
            start = values_read(self.model.config, self.classifier.config.attributes, read)
        encoded = encode_crops(self.model, crops, start)  # every face in one batch, each once
        gray = is_gray(preview)  # the preview: as telling as the photo, a fraction of the pixels
        if gray and self.model.config.image_channels == 1 and not faces and is_gray(crops[0]):
            # held as `shown` shows it: a move's change (gray, as the crop is) is pasted into it
            # on one channel, neither widened to RGB nor narrowed back
            preview = preview.convert("L")
        preview_faces = tuple(rescaled(face, preview.size) for face in faces)
        sites = paste_sites(preview.size, preview_faces, crops[0], preview=True)
        return PreparedPhoto(
            photo,
            preview,
            crops,
            encoded,
            faces,
            preview_faces,
            sites,
            note,
            start,
            inverted,
            gray,
        )

    def face_numbers(self, prepared: PreparedPhoto, faces: Faces = "all") -> list[int]:
        """`faces` as face numbers of `prepared`, largest first; a ValueError saying what to
        pass for anything else."""
        count = len(prepared.crops)
        if faces == "all":
            return list(range(count))
        if faces == "largest":
            return [0]
        if isinstance(faces, str):
            raise ValueError(
                f'faces must be "all", "largest" or face numbers (0 is the largest), not {faces!r}.'
            )
        numbers = sorted({int(i) for i in faces})
        if not numbers:
            raise ValueError("Pick at least one face to edit.")
        missing = [i for i in numbers if not 0 <= i < count]
        if missing:
            raise ValueError(
                f"This photo has {count} face(s), numbered 0 (the largest) to {count - 1}; "
                f"there is no face {missing[0]}."
            )
        return numbers

    def detail_strength(self, detail: float | None = None) -> float:
        return detail_strength(self.model.config, detail)

    def _decode_batch(self, latent: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():  # on whichever request's thread leads the batch
            return self.model.decode(latent, channels)

    def shown(
        self, image: Image.Image, prepared: PreparedPhoto, whole_photo: bool = False
    ) -> Image.Image:
        """What a user gets: a grayscale model's crops gray, and the photo they are pasted
        into gray too when it had no colour (edits gray end to end); inverted back if the
        photo was inverted for the model."""
        gray = self.model.config.image_channels == 1 and (prepared.gray or not whole_photo)
        image = image.convert("L") if gray else image
        return ImageOps.invert(image) if prepared.inverted else image

    def inverts(self, photo: Image.Image) -> bool:
        """Whether `photo` has the other background than the model's training images (a dark
        digit on paper for a model of light digits on black), so it is edited inverted."""
        background = self.model.config.background
        return (
            not self.aligns_faces
            and background is not None
            and (background_of(photo) != background)
        )

    def photo(self, photo_id: str, session: str = "") -> PreparedPhoto:
        """The session's prepared photo; `PhotoNotLoaded` (a ValueError) for any other id."""
        return self.photos.get(session, photo_id)

    def _decode(
        self,
        prepared: PreparedPhoto,
        alphas: list[Mapping[str, float]],
        faces: list[int],
        detail: float,
    ) -> list[list[Image.Image]]:
        """For each set of slider values, the edited crop of each of `faces`: one batch,
        shared with concurrent moves (`DecodeBatcher`)."""
        return decode_crops(
            self.model, prepared.encoded, alphas, faces, detail, self.decoder.decode
        )

    def decode(
        self,
        photo_id: str,
        alphas: list[Mapping[str, float]],
        session: str = "",
        detail: float | None = None,
        face: int = 0,
    ) -> list[Image.Image]:
        """Edited crops of one face (0: the largest), one per set of slider values, in one
        decoder batch, with `detail` (s) times the photo's residual added (None: the model's
        default)."""
        prepared = self.photo(photo_id, session)
        faces = self.face_numbers(prepared, [face])
        rows = self._decode(prepared, alphas, faces, self.detail_strength(detail))
        return [self.shown(row[0], prepared) for row in rows]

    def edit(
        self,
        photo_id: str,
        values: Mapping[str, float],
        session: str = "",
        full_resolution: bool = False,
        detail: float | None = None,
        faces: Faces = "all",
    ) -> EditResult:
        """The edited crops, and the photo with them pasted back: into the preview-sized copy
        (fast enough to follow a slider), or at full resolution for a download. `detail` is
        "keep photo detail", 0…1 (None: the model's default); `faces` which faces to edit."""
        strength = self.detail_strength(detail)
        prepared = self.photo(photo_id, session)
        numbers = self.face_numbers(prepared, faces)
        (crops,) = self._decode(prepared, [values], numbers, strength)
        if full_resolution:
            faces_edited = [prepared.faces[number] for number in numbers] if prepared.faces else []
            sites = paste_sites(prepared.photo.size, faces_edited, prepared.crop)
            photo = paste_at(prepared.photo, crops, sites, strength)
        else:
            sites = tuple(prepared.preview_sites[number] for number in numbers)
            photo = paste_at(prepared.preview, crops, sites, strength)
        shown = [self.shown(crop, prepared) for crop in crops]
        boxes = tuple(site.box for site in sites)
        return EditResult(shown, self.shown(photo, prepared, whole_photo=True), boxes)

    def sweep(
        self,
        photo_id: str,
        attribute: str,
        low: float,
        high: float,
        steps: int = 7,
        values: Mapping[str, float] | None = None,
        session: str = "",
        detail: float | None = None,
        faces: Faces = "all",
    ) -> Image.Image:
        """One slider from `low` to `high` in `steps` crops side by side, the others as in
        `values` (default: the photo's start); one row per face in `faces`. The slider is a
        binary attribute, or one value of a group by its own name (`eight` of the Digit
        group), the group's other values kept as `with_values` keeps them."""
        if not 2 <= steps <= 32:
            raise ValueError("A sweep needs between 2 and 32 steps.")
        strength = self.detail_strength(detail)
        prepared = self.photo(photo_id, session)
        numbers = self.face_numbers(prepared, faces)
        config, base = self.model.config, dict(values or prepared.slider_start)
        if attribute in config.categories:
            values = ", ".join(config.categories[attribute])
            raise ValueError(f"Sweep one value of {attribute}: {values}.")
        alphas = [with_values(config, base, {attribute: a}) for a in np.linspace(low, high, steps)]
        size = self.model.config.image_size
        mode = "L" if config.image_channels == 1 else "RGB"  # a gray model's strip stays gray
        strip = Image.new(mode, (size * steps, size * len(numbers)))
        for row, number in enumerate(numbers):  # a face at a time: batches stay `steps` small
            for column, (crop,) in enumerate(self._decode(prepared, alphas, [number], strength)):
                strip.paste(crop, (column * size, row * size))
        return self.shown(strip, prepared)
