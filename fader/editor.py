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
from PIL import Image

from fader.align import AlignedFace, faces_in, largest_face, paste_back, rescaled
from fader.batching import DecodeBatcher
from fader.classifier import Classifier
from fader.model import FaderConfig, FaderNetwork
from fader.photo import PhotoSource, centre_square, load_photo, paste_centre_square
from fader.photo_store import PhotoStore, StoreLimits
from fader.pixels import to_images, to_tensor

PREVIEW_SIDE = 768  # live edits paste onto a copy this large; exports use the full photo
MAX_FACES = 16  # faces prepared per photo, largest first: a crowd must not fill the store


@dataclass(frozen=True)
class PreparedPhoto:
    """A photo as the editor keeps it: every face aligned (or the centre square) and encoded
    once, in one batch; index 0 is the largest face."""

    photo: Image.Image  # upright RGB original, full resolution
    preview: Image.Image  # the photo at most PREVIEW_SIDE on a side, for live edits
    crops: tuple[Image.Image, ...]  # what the model sees, image_size², one per face
    latents: torch.Tensor  # n×C×h×w, one per crop
    residuals: torch.Tensor  # n×3×S×S, x − D(z, y₀): the detail the decoder does not rebuild
    faces: tuple[AlignedFace, ...]  # the alignments, for paste-back; () for whole-image models
    preview_faces: tuple[AlignedFace, ...]  # the same alignments on `preview`
    note: str  # what the user should know ("3 faces found: …")
    # what the classifier reads from the largest face, else neutral; a slider group's values
    # as a dict of its categories
    slider_start: dict[str, float | dict[str, float]]

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
        pixels = sum(image.width * image.height * len(image.getbands()) for image in images)
        tensors = (self.latents, self.residuals)
        return pixels + sum(t.numel() * t.element_size() for t in tensors)


@dataclass(frozen=True)
class EditResult:
    crops: list[Image.Image]  # the edited crops, one per face edited, largest first
    photo: Image.Image

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


def detail_strength(config: FaderConfig, detail: float | None) -> float:
    """`detail` checked, or the model's default "keep photo detail" when None: one rule for
    photos (`Editor`) and camera frames (`fader.stream`)."""
    strength = config.default_detail if detail is None else float(detail)
    if not 0.0 <= strength <= 1.0:
        raise ValueError(
            f"Keep photo detail must be between 0 and 1 (0: the model's output alone; 1: all the "
            f"photo's detail the model does not rebuild), not {detail}."
        )
    return strength


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
        photo = load_photo(image, min_side=32 if self.aligns_faces else 8)
        key = content_key(photo)
        with self._locks_lock:  # one preparation per content at a time: a page's upload fires
            same_photo = self._preparing.setdefault(key, threading.Lock())  # several events
        with same_photo:
            known = self.photos.find(session, key)
            if known is not None:
                return known
            prepared = self.photos.shared(key) or self._prepare(photo)
            photo_id = self.photos.add(session, key, prepared)
        with self._locks_lock:
            if not same_photo.locked():
                self._preparing.pop(key, None)
        return photo_id

    def _prepare(self, photo: Image.Image) -> PreparedPhoto:
        size = self.model.config.image_size
        preview = preview_of(photo)
        faces: tuple[AlignedFace, ...] = ()
        note = ""
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
        x = torch.cat([to_tensor(crop) for crop in crops])
        x = x.contiguous(memory_format=torch.channels_last)
        start = self.neutral_start()
        if self.classifier is not None:
            read = self.classifier.read(x[:1])[0].tolist()
            for name, value in zip(self.classifier.config.attributes, read, strict=True):
                group = self.group_of(name)
                if name in start:
                    start[name] = value
                elif group is not None:
                    start[group] = dict.fromkeys(start[group], 0.0) | {name: value}
        with torch.inference_mode():  # every face in one batch, each once
            latents = self.model.encode(x)
            y0 = self.model.slider_channels(start, batch_size=len(crops))
            residuals = x - self.model.decode(latents, y0)
        preview_faces = tuple(rescaled(face, preview.size) for face in faces)
        return PreparedPhoto(
            photo, preview, crops, latents, residuals, faces, preview_faces, note, start
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

    def neutral_start(self) -> dict[str, float | dict[str, float]]:
        """Slider values without a classifier: 0 for a binary attribute, the first value on for
        an attribute with several (as `FaderNetwork.slider_channels` reads a missing one)."""
        config = self.model.config
        return {
            name: {c: float(i == 0) for i, c in enumerate(categories)}
            if (categories := config.categories_of(name))
            else 0.0
            for name in self.attributes
        }

    def group_of(self, category: str) -> str | None:
        """The several-valued attribute whose values include `category`, if any."""
        groups = self.model.config.categories.items()
        return next((name for name, values in groups if category in values), None)

    def detail_strength(self, detail: float | None = None) -> float:
        return detail_strength(self.model.config, detail)

    def _decode_batch(self, latent: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():  # on whichever request's thread leads the batch
            return self.model.decode(latent, channels)

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
        """For each set of slider values, the edited crop of each of `faces`: one batch."""
        with torch.inference_mode():
            y = torch.cat([self.model.slider_channels(values) for values in alphas])
            y = y.repeat_interleave(len(faces), dim=0)
            z = prepared.latents[faces].repeat(len(alphas), 1, 1, 1)
            residuals = prepared.residuals[faces].repeat(len(alphas), 1, 1, 1)
            crops = to_images(self.decoder.decode(z, y) + detail * residuals)
        return [crops[i : i + len(faces)] for i in range(0, len(crops), len(faces))]

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
        return [row[0] for row in rows]

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
        photo = prepared.photo if full_resolution else prepared.preview
        if not prepared.faces:
            return EditResult(crops, paste_centre_square(photo, crops[0], prepared.crop, strength))
        aligned = prepared.faces if full_resolution else prepared.preview_faces
        for number, crop in zip(numbers, crops, strict=True):
            photo = paste_back(photo, crop, aligned[number], strength)
        return EditResult(crops, photo)

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
        """One attribute from `low` to `high` in `steps` crops side by side, others as given;
        one row per face in `faces`."""
        if attribute not in self.attributes:
            raise ValueError(f"Unknown attribute {attribute!r}; this model has {self.attributes}.")
        if not 2 <= steps <= 32:
            raise ValueError("A sweep needs between 2 and 32 steps.")
        strength = self.detail_strength(detail)
        prepared = self.photo(photo_id, session)
        numbers = self.face_numbers(prepared, faces)
        base = dict(values or {})
        alphas = [{**base, attribute: float(a)} for a in np.linspace(low, high, steps)]
        size = self.model.config.image_size
        strip = Image.new("RGB", (size * steps, size * len(numbers)))
        for row, number in enumerate(numbers):  # a face at a time: batches stay `steps` small
            for column, (crop,) in enumerate(self._decode(prepared, alphas, [number], strength)):
                strip.paste(crop, (column * size, row * size))
        return strip
