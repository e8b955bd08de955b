"""Crop any photo exactly the way CelebA's aligned images were cropped, and paste edits back.

The Fader Networks authors found their models "did not work on our images, unless they have the
same format as images in the dataset". That format (Liu et al., "Deep Learning Face Attributes in
the Wild", ICCV 2015, ``img_align_celeba``) is a non-reflective similarity transform — rotation,
uniform scale, translation; no shear, no mirror — fitted by least squares so that the two eye
centres and the mouth-corner midpoint land on fixed points of a 178×218 frame, with bicubic
resampling and replicated borders. The authors then kept rows 20..197 (``img[20:-20]``, 178×178)
and resized to 256. Here all of it is one affine map from the photo to the ``size``×``size`` crop,
so the photo is resampled once, and its inverse is kept to paste the edited crop back.

Eye and mouth points come from the 68 iBUG 300-W landmarks (see ``fader.landmarks``).
"""

from __future__ import annotations

import functools
import math
import weakref
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from PIL import Image

from fader.landmarks import Face, LandmarkBackend, get_backend
from fader.photo import PhotoSource, load_photo, to_uint8

CELEBA_TEMPLATE = np.array([[70.745, 112.0], [108.237, 112.0], [89.432, 153.514]])
"""Image-left eye centre, image-right eye centre, mouth-corner midpoint: 1-based (x, y) pixel
coordinates in the 178×218 ``img_align_celeba`` frame."""
CELEBA_WIDTH = 178
CELEBA_CROP_TOP = 20
"""First kept row (0-based) of the authors' 178×178 square crop ``img[20:-20]``."""

# iBUG 300-W indices. 36–41 is the subject's right eye, which is on the image's left, where the
# template's first eye is; mirrored photos still label by image side, so no special case.
IMAGE_LEFT_EYE = slice(36, 42)
IMAGE_RIGHT_EYE = slice(42, 48)
MOUTH_CORNERS = (48, 54)

# Second look: the face is re-detected on an upright copy at CelebA scale, padded on each side so
# the whole head is visible to the detector.
SECOND_LOOK_SIZE = 256
SECOND_LOOK_PAD = 48

# Paste-back mask: an ellipse in crop units (crop spans -0.5..0.5), feathered with a smoothstep
# whose outer edge stays inside the crop so no hard crop border ever shows in the photo.
MASK_RADII = (0.40, 0.43)
MASK_FEATHER = 0.15


class NoFaceFound(ValueError):
    """No face was detected in the photo."""


@dataclass(frozen=True)
class AlignedFace:
    crop: Image.Image
    """RGB, size×size, CelebA-aligned."""
    landmarks: np.ndarray
    """68×2 iBUG points in photo pixel coordinates."""
    forward: np.ndarray
    """2×3 affine: photo pixel → crop pixel."""
    inverse: np.ndarray
    """2×3 affine: crop pixel → photo pixel."""
    box: tuple[float, float, float, float]
    """Detected face box x1, y1, x2, y2 in photo pixels."""
    backend: str
    """Landmark backend that produced this face ("dlib" or "face_alignment")."""
    n_faces: int
    """Faces found in the photo (this is one of them; align_face returns the largest)."""
    photo_size: tuple[int, int]
    """(width, height) of the upright photo the coordinates refer to."""


def celeba_template(size: int) -> np.ndarray:
    """The three template points in 0-based pixel-centre coordinates of a size×size crop."""
    points = CELEBA_TEMPLATE - 1.0  # 1-based pixel index → 0-based pixel centre
    points[:, 1] -= CELEBA_CROP_TOP
    # Resizing 178 → size maps pixel edges to pixel edges: centres sit half a pixel in.
    return (points + 0.5) * (size / CELEBA_WIDTH) - 0.5


def similarity_fit(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares non-reflective similarity (2×3) taking `source` points onto `target`.

    Parametrised as [[a, -b, tx], [b, a, ty]], which is exactly rotation × uniform scale +
    translation, so the fit can neither shear nor mirror.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    x, y = source[:, 0], source[:, 1]
    ones, zeros = np.ones_like(x), np.zeros_like(x)
    design = np.concatenate(
        [np.stack([x, -y, ones, zeros], axis=1), np.stack([y, x, zeros, ones], axis=1)]
    )
    (a, b, tx, ty), *_ = np.linalg.lstsq(design, np.concatenate([target[:, 0], target[:, 1]]))
    return np.array([[a, -b, tx], [b, a, ty]])


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    linear_inverse = np.linalg.inv(matrix[:, :2])
    return np.hstack([linear_inverse, -linear_inverse @ matrix[:, 2:]])


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.asarray(points, dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2]


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2×3 affine applying `inner` first, then `outer`."""
    return np.hstack([outer[:, :2] @ inner[:, :2], outer[:, :2] @ inner[:, 2:] + outer[:, 2:]])


def rescaled(aligned: AlignedFace, photo_size: tuple[int, int]) -> AlignedFace:
    """The same alignment for a resized copy of the photo, e.g. a fast preview.

    A resize maps pixel centres as x' = s·(x + 0.5) − 0.5 on each axis.
    """
    sx, sy = (new / old for new, old in zip(photo_size, aligned.photo_size, strict=True))
    to_new = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])
    x1, y1, x2, y2 = aligned.box
    corners = apply_affine(to_new, np.array([[x1, y1], [x2, y2]]))
    return replace(
        aligned,
        landmarks=apply_affine(to_new, aligned.landmarks),
        forward=compose_affine(aligned.forward, invert_affine(to_new)),
        inverse=compose_affine(to_new, aligned.inverse),
        box=tuple(float(v) for v in corners.ravel()),
        photo_size=tuple(photo_size),
    )


def anchor_points(landmarks: np.ndarray) -> np.ndarray:
    """Image-left eye centre, image-right eye centre, mouth-corner midpoint from 68 landmarks."""
    return np.stack(
        [
            landmarks[IMAGE_LEFT_EYE].mean(axis=0),
            landmarks[IMAGE_RIGHT_EYE].mean(axis=0),
            landmarks[list(MOUTH_CORNERS)].mean(axis=0),
        ]
    )


def crop_transform(landmarks: np.ndarray, size: int) -> np.ndarray:
    """The photo → crop affine for a face's 68 landmarks (CelebA fit, crop and resize in one)."""
    return similarity_fit(anchor_points(landmarks), celeba_template(size))


def warp_to_crop(rgb: np.ndarray, forward: np.ndarray, size: int) -> np.ndarray:
    """Resample the crop once: bicubic, replicated borders, anti-aliased when shrinking."""
    scale = math.sqrt(abs(np.linalg.det(forward[:, :2])))
    # Bicubic alone aliases when a big face shrinks; blur first, as skimage's resize does.
    sigma = max(0.0, (1.0 / scale - 1.0) / 2.0)
    x0, y0, x1, y1 = _crop_footprint(forward, size, rgb.shape, margin=math.ceil(3 * sigma) + 3)
    region = rgb[y0:y1, x0:x1]
    if sigma > 0.3:
        region = cv2.GaussianBlur(region, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    return cv2.warpAffine(
        np.ascontiguousarray(region),
        _shift_origin(forward, x0, y0),
        (size, size),
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REPLICATE,
    )


def align_faces(photo: PhotoSource, size: int = 256, backend: str = "auto") -> list[AlignedFace]:
    """Every face found in `photo`, CelebA-aligned at size×size, largest face first."""
    return faces_in(load_photo(photo), size, backend)


def faces_in(image: Image.Image, size: int = 256, backend: str = "auto") -> list[AlignedFace]:
    """`align_faces` for a photo already read by `fader.photo.load_photo` (upright RGB), so a
    caller that has one does not read and copy it a second time."""
    if size < 16:
        raise ValueError(f"Crop size must be at least 16 pixels, not {size}.")
    rgb = np.asarray(image)
    landmark_backend = get_backend(backend)
    candidates = (_look_again(rgb, face, landmark_backend) for face in landmark_backend(rgb))
    faces = sorted((face for face in candidates if face is not None), key=_box_area, reverse=True)
    return [_align(rgb, face, size, landmark_backend.name, len(faces)) for face in faces]


def aligned_on(image: Image.Image, landmarks: np.ndarray, size: int, backend: str) -> AlignedFace:
    """The crop `faces_in` would make for a face with these 68 landmarks: for landmarks found
    elsewhere, such as a video's smoothed over neighbouring frames (`fader.video`)."""
    (x1, y1), (x2, y2) = landmarks.min(axis=0), landmarks.max(axis=0)
    face = Face((float(x1), float(y1), float(x2), float(y2)), landmarks, 1.0)
    return _align(np.asarray(image), face, size, backend, 1)


def largest_face(faces: list[AlignedFace]) -> AlignedFace:
    """The first (largest) of `faces`; `NoFaceFound` with what to try when there is none."""
    if not faces:
        raise NoFaceFound(
            "No face found in this photo. Use a photo where one face is clearly visible, "
            "roughly frontal, tilted at most about 30°, and not tiny: at least about a tenth of "
            "the photo's longer side."
        )
    return faces[0]


def align_face(photo: PhotoSource, size: int = 256, backend: str = "auto") -> AlignedFace:
    """The largest face in `photo`, CelebA-aligned; `NoFaceFound` when there is none."""
    return largest_face(align_faces(photo, size, backend))


def align_for_training(photo: PhotoSource, size: int, backend: str = "auto") -> np.ndarray | None:
    """uint8 size×size×3 crop of the largest face, or None when there is no face.

    Unreadable files raise `fader.photo.BadPhoto` (a ValueError) for the caller to count or skip.
    """
    try:
        return np.asarray(align_face(photo, size, backend).crop)
    except NoFaceFound:
        return None


def paste_back(
    photo: PhotoSource, edited_crop: PhotoSource, aligned: AlignedFace, detail: float = 0.0
) -> Image.Image:
    """`photo` at full resolution with `edited_crop` blended over the face `aligned` came from.

    The crop is warped back with the kept transform and blended through a feathered ellipse;
    its colours are first shifted so the seam ring matches the original crop, which hides the
    global colour cast an autoencoder's reconstruction tends to have.

    `edited_crop` holds `detail` (s) times the photo's crop, x, as the editor's
    D(z, y) + s·(x − D(z, y₀)) does; that part is taken from the photo itself at its own
    resolution instead, so at s = 1 what the decoder did not change keeps the photo's detail
    finer than the crop's, and an unchanged crop leaves the photo as it was.

    Pasting into the same photo again and again (a slider's moves) keeps a `PasteSite` instead.
    """
    image = load_photo(photo)
    if image.size != aligned.photo_size:
        raise ValueError(
            f"paste_back needs the photo the face was aligned on ({aligned.photo_size}), "
            f"got one of size {image.size}."
        )
    size = aligned.crop.width
    edited = load_photo(edited_crop)
    if edited.size != (size, size):
        edited = edited.resize((size, size), Image.Resampling.LANCZOS)
    site = paste_site(image.size, aligned)
    result = image.copy()
    result.paste(pasted_face(site, np.asarray(edited, np.float32), detail, image), site.box[:2])
    return result


@dataclass(frozen=True)
class PasteSite:
    """Where an edited crop of one face goes back into a photo of one size, with what every
    paste there reuses: the photo's region where the crop's feathered mask has weight, the
    mask warped onto it, the aligned crop's pixels as floats, and the seam ring's colour. A
    site `kept` for a photo's many pastes (a preview's) also keeps the last `paste_base`."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1: the photo's region the mask covers
    to_crop: np.ndarray  # 2×3 affine: region pixel → crop pixel
    kernel: int  # how the crop is resampled onto the region (an OpenCV interpolation flag)
    alpha: np.ndarray  # H×W×1 float32 blend weight over the region, or H×W×3 (see paste_site)
    original: np.ndarray  # size×size×3 float32, the crop as aligned
    ring: np.ndarray  # size×size uint8 mask (0/1): the seam ring the edit's colour is matched on
    ring_colour: np.ndarray  # the original crop's mean colour over the ring
    kept: bool = False
    # a kept site's last paste: its photo, detail and `base` (None until a second paste): one slot
    _kept_base: list[tuple[weakref.ref, float, np.ndarray | None]] = field(
        default_factory=list, init=False, repr=False, compare=False
    )

    @property
    def nbytes(self) -> int:
        arrays = (self.alpha, self.original, self.ring)
        base = self.alpha.nbytes if self.kept else 0  # a kept base: α's shape, float32 too
        return sum(array.nbytes for array in arrays) + base

    def warped(self, crop: np.ndarray) -> np.ndarray:
        """A float32 size×size×C `crop` resampled onto the site's region."""
        x0, y0, x1, y1 = self.box
        return cv2.warpAffine(
            crop,
            self.to_crop,
            (x1 - x0, y1 - y0),
            flags=self.kernel | cv2.WARP_INVERSE_MAP,  # `to_crop` maps photo → crop
            borderMode=cv2.BORDER_REPLICATE,
        )

    def base(self, photo: Image.Image, detail: float) -> np.ndarray | None:
        """`paste_base` of this kept site in `photo`, made on the second paste in a row at one
        detail and kept (read-only) while the pastes stay at it: a slider's moves paste over the
        same one. None until then, for a one-off paste: a drag of "keep photo detail" itself,
        a new value on every move, would make one on every move for nothing."""
        if self._kept_base:
            kept_photo, kept_detail, base = self._kept_base[0]
            if kept_photo() is photo and kept_detail == detail:
                if base is None:
                    base = paste_base(self, np.asarray(photo.crop(self.box), np.float32), detail)
                    base.flags.writeable = False
                    self._kept_base[:] = [(kept_photo, detail, base)]
                return base
        self._kept_base[:] = [(weakref.ref(photo), detail, None)]
        return None


def paste_site(
    photo_size: tuple[int, int],
    aligned: AlignedFace,
    kernel: int = cv2.INTER_CUBIC,
    kept: bool = False,
) -> PasteSite:
    """The `PasteSite` of `aligned`'s face in a photo of `photo_size` (width, height): the
    photo it was aligned on. `kernel` resamples the crop (bicubic; bilinear is several times
    faster, for a live preview). A site `kept` for many pastes (a preview's, one per slider
    move) holds its weight once per channel, so each paste blends in one OpenCV pass (numpy's
    broadcast of one channel took 4x as long); a one-off paste (an export of a large photo)
    keeps the third of the memory."""
    size = aligned.crop.width
    mask = face_mask(size)
    width, height = photo_size
    x0, y0, x1, y1 = _crop_footprint(aligned.forward, size, (height, width), margin=2)
    to_crop = _shift_origin(aligned.forward, x0, y0)
    alpha = cv2.warpAffine(
        mask,
        to_crop,
        (x1 - x0, y1 - y0),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,  # `to_crop` maps photo → crop
        borderValue=0.0,
    )
    rows, columns = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    if rows.size:  # the region narrowed to the mask's: where its weight is 0 nothing changes
        top, bottom = int(rows[0]), int(rows[-1]) + 1
        left, right = int(columns[0]), int(columns[-1]) + 1
        alpha = np.ascontiguousarray(alpha[top:bottom, left:right])
        x0, y0, x1, y1 = x0 + left, y0 + top, x0 + right, y0 + bottom
        to_crop = _shift_origin(aligned.forward, x0, y0)
    original = np.asarray(aligned.crop, dtype=np.float32)
    ring = ((mask > 0.02) & (mask < 0.5)).astype(np.uint8)
    alpha = cv2.merge([alpha] * original.shape[2]) if kept else alpha[..., None]
    colour = ring_mean(original, ring)
    return PasteSite((x0, y0, x1, y1), to_crop, kernel, alpha, original, ring, colour, kept)


def ring_mean(crop: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """The mean colour of float32 `crop` over the `ring` mask (OpenCV's masked mean: a tenth of
    numpy's boolean indexing, on every move)."""
    return np.array(cv2.mean(crop, ring)[: crop.shape[2]], np.float32)


def paste_base(site: PasteSite, region: np.ndarray, detail: float) -> np.ndarray:
    """What a paste at `site` adds α times the warped edit to (α the blend weight), float32:
    region − α·((1 − s)·region + s·x̂), the photo's `region` less what the edit replaces there:
    all of it where no detail is kept, and with `detail` s, x̂ (the aligned crop warped back),
    the part of the edit the photo's own pixels stand for. Nothing in it depends on the edit."""
    replaced = site.warped(site.original)
    cv2.addWeighted(region, 1.0 - detail, replaced, detail, 0.0, dst=replaced)
    replaced *= site.alpha
    return cv2.subtract(region, replaced)


def pasted_face(
    site: PasteSite,
    edited: np.ndarray,
    detail: float,
    photo: Image.Image,
    base: np.ndarray | None = None,
) -> Image.Image:
    """The site's region of `photo` with `edited` (size×size×3 float32, holding `detail` times
    the original crop: see `paste_back`) blended in, its colour first moved so the seam ring's
    mean is the original crop's. With the site's `paste_base` in `photo` (a kept site's, made
    once for a preview's moves), the edit is warped alone and added over it; without, what the
    photo's own pixels stand for is taken out before the one warp (a one-off paste: an export,
    a video frame). The two orders are the same sums, rounded apart by float32."""
    shift = site.ring_colour - ring_mean(edited, site.ring)
    face = cv2.add(edited, (*shift.tolist(), 0.0))  # numpy's add of a 3-vector: 14x as long
    np.clip(face, 0.0, 255.0, out=face)
    if base is not None:  # the kept base serves every move, read-only: base + α × face
        face = cv2.multiply(site.warped(face), site.alpha)
        return Image.fromarray(cv2.add(face, base, dtype=cv2.CV_8U))  # rounded as `to_uint8`
    region = np.asarray(photo.crop(site.box), np.float32)
    face -= detail * site.original  # the photo's own pixels replace it below
    face = site.warped(face)
    if detail != 1.0:  # at 1 the photo's pixels stay whole under the edit's change
        cv2.scaleAdd(region, detail - 1.0, face, dst=face)  # one pass: numpy's takes two
    if site.alpha.shape[2] == face.shape[2]:  # a kept site's: region += face × alpha, one pass
        cv2.accumulateProduct(face, site.alpha, region)
    else:
        face *= site.alpha
        region += face
    return Image.fromarray(to_uint8(region))


@functools.cache
def face_mask(size: int) -> np.ndarray:
    """float32 size×size blend weight: 1 over the face, smoothly 0 before the crop's edges
    (made once per size, read-only)."""
    centres = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    radius = np.hypot(centres[None, :] / MASK_RADII[0], centres[:, None] / MASK_RADII[1])
    t = np.clip((1.0 + MASK_FEATHER - radius) / (2.0 * MASK_FEATHER), 0.0, 1.0)
    mask = (t * t * (3.0 - 2.0 * t)).astype(np.float32)
    mask.flags.writeable = False
    return mask


def _look_again(rgb: np.ndarray, face: Face, backend: LandmarkBackend) -> Face | None:
    """The face's landmarks re-estimated on an upright, CelebA-scaled copy, or None if no face
    is seen there.

    Landmark models are trained on upright faces and drift on tilted ones (seen: a 30° roll
    moved the crop by 10+ pixels); seeing the face upright fixes that. It also rejects the
    detector's false positives (a badge, a texture), which rarely still look like a face once
    "aligned".
    """
    frame = crop_transform(face.landmarks, SECOND_LOOK_SIZE)
    frame[:, 2] += SECOND_LOOK_PAD
    side = SECOND_LOOK_SIZE + 2 * SECOND_LOOK_PAD
    upright = warp_to_crop(rgb, frame, side)
    centre = celeba_template(SECOND_LOOK_SIZE).mean(axis=0) + SECOND_LOOK_PAD
    seen = [f for f in backend(upright) if _box_contains(f.box, centre)]
    if not seen:
        return None
    best = min(seen, key=lambda f: np.linalg.norm(_box_centre(f.box) - centre))
    return Face(face.box, apply_affine(invert_affine(frame), best.landmarks), face.score)


def _box_contains(box: tuple[float, float, float, float], point: np.ndarray) -> bool:
    x1, y1, x2, y2 = box
    return x1 <= point[0] <= x2 and y1 <= point[1] <= y2


def _box_centre(box: tuple[float, float, float, float]) -> np.ndarray:
    x1, y1, x2, y2 = box
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2])


def _align(rgb: np.ndarray, face: Face, size: int, backend: str, n_faces: int) -> AlignedFace:
    forward = crop_transform(face.landmarks, size)
    crop = warp_to_crop(rgb, forward, size)
    return AlignedFace(
        crop=Image.fromarray(crop),
        landmarks=face.landmarks,
        forward=forward,
        inverse=invert_affine(forward),
        box=face.box,
        backend=backend,
        n_faces=n_faces,
        photo_size=(rgb.shape[1], rgb.shape[0]),
    )


def _box_area(face: Face) -> float:
    x1, y1, x2, y2 = face.box
    return (x2 - x1) * (y2 - y1)


def _crop_footprint(
    forward: np.ndarray, size: int, shape: tuple[int, ...], margin: int
) -> tuple[int, int, int, int]:
    """Bounding box (x0, y0, x1, y1) in the photo of what the crop sees, clipped to the photo."""
    corners = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [-0.5, size - 0.5], [size - 0.5] * 2])
    photo_corners = apply_affine(invert_affine(forward), corners)
    height, width = shape[:2]
    x0 = min(max(math.floor(photo_corners[:, 0].min()) - margin, 0), width - 1)
    y0 = min(max(math.floor(photo_corners[:, 1].min()) - margin, 0), height - 1)
    x1 = max(min(math.ceil(photo_corners[:, 0].max()) + margin + 1, width), x0 + 1)
    y1 = max(min(math.ceil(photo_corners[:, 1].max()) + margin + 1, height), y0 + 1)
    return x0, y0, x1, y1


def _shift_origin(forward: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """`forward` for a sub-image of the photo whose top-left pixel is (x0, y0)."""
    shifted = forward.copy()
    shifted[:, 2] += forward[:, :2] @ np.array([x0, y0], dtype=np.float64)
    return shifted
