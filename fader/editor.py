"""Edit photos with a Fader model: prepare and encode a photo once, then decode per slider move.

The encoder runs once per photo (its latent is kept in a per-session `PhotoStore`), so moving a
slider costs one decoder pass plus the paste-back: the hot path of the app.

A decoder rebuilds the crop from a small latent, so it is blurrier than the photo. The editor
therefore adds back what it could not rebuild: edited = D(z, y) + s·(x − D(z, y₀)), with y₀
the sliders' starting values and s ∈ [0, 1] "keep photo detail" (the model's default, or the
caller's). The residual x − D(z, y₀) is computed once per photo; at y = y₀ and s = 1 the edit is
the photo itself. A strong edit at s = 1 keeps the old shape showing through (a swapped digit
keeps its old strokes), which is why whole-image models default to s = 0. Nothing here knows
about Gradio; the app and `gradio_client` users share this code. A `session` names whose photo
it is (the app passes Gradio's session hash; a script can leave it empty).
"""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from fader.align import AlignedFace, faces_in, largest_face, paste_back, rescaled
from fader.batching import DecodeBatcher
from fader.classifier import Classifier
from fader.model import FaderNetwork
from fader.photo import PhotoSource, centre_square, load_photo, paste_centre_square
from fader.photo_store import PhotoStore, StoreLimits
from fader.pixels import to_images, to_tensor

PREVIEW_SIDE = 768  # live edits paste onto a copy this large; exports use the full photo


@dataclass(frozen=True)
class PreparedPhoto:
    """A photo as the editor keeps it: aligned (or centre-cropped) and encoded once."""

    photo: Image.Image  # upright RGB original, full resolution
    preview: Image.Image  # the photo at most PREVIEW_SIDE on a side, for live edits
    crop: Image.Image  # what the model sees, image_size²
    latent: torch.Tensor  # 1×C×h×w
    residual: torch.Tensor  # 1×3×S×S, x − D(z, y₀): the detail the decoder does not rebuild
    face: AlignedFace | None  # the alignment, for paste-back; None for whole-image models
    preview_face: AlignedFace | None  # the same alignment on `preview`
    note: str  # what the user should know ("3 faces found: editing the largest")
    slider_start: dict[str, float]  # what the classifier reads from the crop, else 0

    @property
    def nbytes(self) -> int:
        """Memory held by the pixels and the latent (what the store's budgets count)."""
        images = (self.photo, self.preview, self.crop)
        pixels = sum(image.width * image.height * len(image.getbands()) for image in images)
        tensors = (self.latent, self.residual)
        return pixels + sum(t.numel() * t.element_size() for t in tensors)


@dataclass(frozen=True)
class EditResult:
    crop: Image.Image
    photo: Image.Image


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
        known = self.photos.find(session, key)
        if known is not None:
            return known
        prepared = self.photos.shared(key) or self._prepare(photo)
        return self.photos.add(session, key, prepared)

    def _prepare(self, photo: Image.Image) -> PreparedPhoto:
        size = self.model.config.image_size
        preview = preview_of(photo)
        face = preview_face = None
        note = ""
        if self.aligns_faces:
            face = largest_face(faces_in(photo, size, self.aligner))
            preview_face = rescaled(face, preview.size)
            crop = face.crop
            if face.n_faces > 1:
                note = f"{face.n_faces} faces found: editing the largest."
        else:
            crop = centre_square(photo, size)
        x = to_tensor(crop)
        start = dict.fromkeys(self.attributes, 0.0)
        if self.classifier is not None:
            read = self.classifier.read(x)[0].tolist()
            start |= {
                name: value
                for name, value in zip(self.classifier.config.attributes, read, strict=True)
                if name in start
            }
        with torch.inference_mode():
            latent = self.model.encode(x)
            residual = x - self.model.decode(latent, self.model.slider_channels(start))
        return PreparedPhoto(
            photo, preview, crop, latent, residual, face, preview_face, note, start
        )

    def detail_strength(self, detail: float | None = None) -> float:
        """`detail` checked, or the model's default "keep photo detail" when None."""
        strength = self.model.config.default_detail if detail is None else float(detail)
        if not 0.0 <= strength <= 1.0:
            raise ValueError(
                f"Keep photo detail must be between 0 (the model's output alone) and 1 (all the "
                f"photo's detail the model does not rebuild), not {detail}."
            )
        return strength

    def _decode_batch(self, latent: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():  # on whichever request's thread leads the batch
            return self.model.decode(latent, channels)

    def photo(self, photo_id: str, session: str = "") -> PreparedPhoto:
        """The session's prepared photo; `PhotoNotLoaded` (a ValueError) for any other id."""
        return self.photos.get(session, photo_id)

    def decode(
        self,
        photo_id: str,
        alphas: list[Mapping[str, float]],
        session: str = "",
        detail: float | None = None,
    ) -> list[Image.Image]:
        """Edited crops, one per set of slider values, in one decoder batch, with `detail` (s)
        times the photo's residual added (None: the model's default)."""
        strength = self.detail_strength(detail)
        prepared = self.photo(photo_id, session)
        with torch.inference_mode():
            y = torch.cat([self.model.slider_channels(values) for values in alphas])
            z = prepared.latent.expand(len(alphas), -1, -1, -1)
            return to_images(self.decoder.decode(z, y) + strength * prepared.residual)

    def edit(
        self,
        photo_id: str,
        values: Mapping[str, float],
        session: str = "",
        full_resolution: bool = False,
        detail: float | None = None,
    ) -> EditResult:
        """The edited crop, and the photo with it pasted back: into the preview-sized copy
        (fast enough to follow a slider), or at full resolution for a download. `detail` is
        "keep photo detail", 0…1 (None: the model's default)."""
        strength = self.detail_strength(detail)
        prepared = self.photo(photo_id, session)
        (crop,) = self.decode(photo_id, [values], session, strength)
        photo = prepared.photo if full_resolution else prepared.preview
        face = prepared.face if full_resolution else prepared.preview_face
        if face is not None:
            return EditResult(crop, paste_back(photo, crop, face, strength))
        return EditResult(crop, paste_centre_square(photo, crop, prepared.crop, strength))

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
    ) -> Image.Image:
        """One attribute from `low` to `high` in `steps` crops side by side, others as given."""
        if attribute not in self.attributes:
            raise ValueError(f"Unknown attribute {attribute!r}; this model has {self.attributes}.")
        if not 2 <= steps <= 32:
            raise ValueError("A sweep needs between 2 and 32 steps.")
        base = dict(values or {})
        alphas = [{**base, attribute: float(a)} for a in np.linspace(low, high, steps)]
        crops = self.decode(photo_id, alphas, session, detail)
        size = crops[0].width
        strip = Image.new("RGB", (size * steps, size))
        for i, crop in enumerate(crops):
            strip.paste(crop, (i * size, 0))
        return strip
