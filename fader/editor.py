"""Edit photos with a Fader model: prepare and encode a photo once, then decode per slider move.

The encoder runs once per photo (its latent is kept in a bounded LRU keyed by the photo's
content), so moving a slider costs one decoder pass plus the paste-back: the hot path of the app.
Nothing here knows about Gradio; the app and `gradio_client` users share this code.
"""

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from fader.classifier import Classifier
from fader.heap import return_freed_memory
from fader.model import FaderNetwork
from fader.photo import PhotoSource, centre_square, load_photo, paste_centre_square
from fader.pixels import to_images, to_tensor

PREVIEW_SIDE = 768  # live edits paste onto a copy this large; exports use the full photo


@dataclass(frozen=True)
class LoadedPhoto:
    photo: Image.Image  # upright RGB original, full resolution
    preview: Image.Image  # the photo at most PREVIEW_SIDE on a side, for live edits
    crop: Image.Image  # what the model sees, image_size²
    latent: torch.Tensor  # 1×C×h×w
    face: "AlignedFace | None"  # noqa: F821 — the alignment, for paste-back; None without one
    preview_face: "AlignedFace | None"  # noqa: F821 — the same alignment on `preview`
    note: str  # what the user should know ("3 faces found: editing the largest")
    start: dict[str, float]  # slider values to start at: what the classifier reads, else 0

    @property
    def nbytes(self) -> int:
        """Memory held by the pixels and the latent (what the cache's byte budget counts)."""
        images = (self.photo, self.preview, self.crop)
        pixels = sum(image.width * image.height * len(image.getbands()) for image in images)
        return pixels + self.latent.numel() * self.latent.element_size()


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


class Editor:
    """Thread-safe: Gradio runs handlers for several users at once on one Editor.

    The model is switched to eval mode and channels-last layout (in place): on CPU the decoder's
    transposed convolutions run about 25% faster that way.
    """

    def __init__(
        self,
        model: FaderNetwork,
        aligner: str = "auto",
        cache_size: int = 32,
        classifier: Classifier | None = None,
        cache_bytes: int = 512 * 2**20,
    ):
        """The cache keeps at most `cache_size` photos and, past the newest one, `cache_bytes`:
        full-resolution photos are kept for the export, and 32 photos of 50 megapixels would
        otherwise hold 4.8 GB."""
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.classifier = classifier.eval() if classifier is not None else None
        self.aligner = aligner
        self.cache_size, self.cache_bytes = cache_size, cache_bytes
        self._photos: OrderedDict[str, LoadedPhoto] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def attributes(self) -> list[str]:
        return self.model.attributes

    @property
    def aligns_faces(self) -> bool:
        return self.model.config.aligns_faces

    def load(self, image: PhotoSource) -> str:
        """Prepare and encode `image` (once: the same content returns the cached handle)."""
        photo = load_photo(image, min_side=32 if self.aligns_faces else 8)
        handle = hashlib.blake2b(photo.tobytes(), digest_size=16)
        handle.update(repr((photo.size, id(self.model))).encode())
        key = handle.hexdigest()
        with self._lock:
            if key in self._photos:
                self._photos.move_to_end(key)
                return key
        loaded = self._prepare(photo)
        with self._lock:
            self._photos[key] = loaded
            held = sum(cached.nbytes for cached in self._photos.values())
            while len(self._photos) > self.cache_size or (
                held > self.cache_bytes and len(self._photos) > 1
            ):
                _, evicted = self._photos.popitem(last=False)
                held -= evicted.nbytes
        return_freed_memory()
        return key

    def _prepare(self, photo: Image.Image) -> LoadedPhoto:
        size = self.model.config.image_size
        preview = preview_of(photo)
        face = preview_face = None
        note = ""
        if self.aligns_faces:
            from fader.align import align_face, rescaled

            face = align_face(photo, size=size, backend=self.aligner)
            preview_face = rescaled(face, preview.size)
            crop = face.crop
            if face.n_faces > 1:
                note = f"{face.n_faces} faces found: editing the largest."
        else:
            crop = centre_square(photo, size)
        x = to_tensor(crop)
        with torch.inference_mode():
            latent = self.model.encode(x)
        start = dict.fromkeys(self.attributes, 0.0)
        if self.classifier is not None:
            read = self.classifier.read(x)[0].tolist()
            start |= {
                name: value
                for name, value in zip(self.classifier.config.attributes, read, strict=True)
                if name in start
            }
        return LoadedPhoto(photo, preview, crop, latent, face, preview_face, note, start)

    def get(self, handle: str) -> LoadedPhoto:
        with self._lock:
            loaded = self._photos.get(handle)
        if loaded is None:
            raise ValueError("This photo is no longer loaded; upload it again.")
        return loaded

    def __len__(self) -> int:
        return len(self._photos)

    def decode(self, handle: str, alphas: list[Mapping[str, float]]) -> list[Image.Image]:
        """Edited crops, one per set of slider values, in one decoder batch."""
        latent = self.get(handle).latent
        with torch.inference_mode():
            y = torch.cat([self.model.slider_channels(values) for values in alphas])
            return to_images(self.model.decode(latent.expand(len(alphas), -1, -1, -1), y))

    def edit(
        self, handle: str, values: Mapping[str, float], full_resolution: bool = False
    ) -> EditResult:
        """The edited crop, and the photo with it pasted back: into the preview-sized copy
        (fast enough to follow a slider), or at full resolution for a download."""
        loaded = self.get(handle)
        (crop,) = self.decode(handle, [values])
        photo = loaded.photo if full_resolution else loaded.preview
        face = loaded.face if full_resolution else loaded.preview_face
        if face is not None:
            from fader.align import paste_back

            return EditResult(crop, paste_back(photo, crop, face))
        return EditResult(crop, paste_centre_square(photo, crop))

    def sweep(
        self,
        handle: str,
        attribute: str,
        low: float,
        high: float,
        steps: int = 7,
        values: Mapping[str, float] | None = None,
    ) -> Image.Image:
        """One attribute from `low` to `high` in `steps` crops side by side, others as given."""
        if attribute not in self.attributes:
            raise ValueError(f"Unknown attribute {attribute!r}; this model has {self.attributes}.")
        if not 2 <= steps <= 32:
            raise ValueError("A sweep needs between 2 and 32 steps.")
        base = dict(values or {})
        alphas = [{**base, attribute: float(a)} for a in np.linspace(low, high, steps)]
        crops = self.decode(handle, alphas)
        size = crops[0].width
        strip = Image.new("RGB", (size * steps, size))
        for i, crop in enumerate(crops):
            strip.paste(crop, (i * size, 0))
        return strip
