"""Face boxes and the 68 iBUG 300-W landmarks, from either of two interchangeable backends.

Both backends return the same 68-point layout (Sagonas et al., "300 Faces in-the-Wild
Challenge", 2013) in 0-based pixel-centre coordinates of the photo, so alignment has one path:

- ``"dlib"``: dlib's HOG frontal face detector and the regression-tree shape predictor
  (Kazemi & Sullivan, CVPR 2014) from the ``dlib-bin`` and ``face-recognition-models`` wheels.
  Fully offline, ~0.1 s per photo on a CPU.
  **Licence:** ``shape_predictor_68_face_landmarks.dat`` was trained on the iBUG 300-W dataset,
  whose terms exclude commercial use. Do not use this backend in a commercial product.
- ``"face_alignment"``: FAN (Bulat & Tzimiropoulos, ICCV 2017) from the ``face-alignment``
  package. More accurate on profile and expressive faces, but its weights are downloaded on first
  use into ``$TORCH_HOME/hub/checkpoints/``. Face boxes still come from dlib's HOG detector, so
  FAN's own detector weights are never needed.

``"auto"`` picks FAN when its weights are on disk, or may be downloaded (neither
``FADER_OFFLINE`` nor ``HF_HUB_OFFLINE`` is set), and dlib otherwise or when FAN fails to load.
Backends are slow to build, so each is built once per process and shared between threads.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from fader.environment import offline

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "dlib", "face_alignment")
FAN_WEIGHTS = "2DFAN4-11f355bf06.pth.tar"

DETECT_MIN_SIDE = 640
"""HOG finds faces of 80 px and up: smaller photos are upscaled to this longer side first."""
DETECT_MAX_SIDE = 1024
"""Larger photos are detected on a copy this size (speed), landmarks are fitted at full size."""
CONFIDENT_SCORE = 0.5
"""HOG detections scoring below this (clothing patches, textures) are dropped, unless nothing
scores higher: a lone weak detection is still the best guess there is."""


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]
    """x1, y1, x2, y2 in photo pixels."""
    landmarks: np.ndarray
    """68×2 float (x, y), iBUG 300-W order, photo pixels."""
    score: float


class LandmarkBackend(Protocol):
    name: str

    def __call__(self, rgb: np.ndarray) -> list[Face]: ...

    def fit(self, rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """68 landmarks for a face known to lie in `box` (no detection): how a tracker that
        already knows where the face is re-fits its landmarks cheaply."""
        ...


class BackendUnavailable(ValueError):
    """The requested backend cannot run here; the message says how to fix it or what to use."""


def fan_weights_path() -> str:
    import torch.hub  # torch loads in ~1 s: only when FAN is asked about

    return os.path.join(torch.hub.get_dir(), "checkpoints", FAN_WEIGHTS)


def fan_weights_present() -> bool:
    return os.path.isfile(fan_weights_path())


_cache: dict[str, LandmarkBackend] = {}
_cache_lock = threading.Lock()
_hog_detector: HogDetector | None = None
_fan_failed = False


def get_backend(name: str = "auto") -> LandmarkBackend:
    """The backend called `name` (one of BACKENDS), built on first use and then reused."""
    global _fan_failed
    if name not in BACKENDS:
        raise ValueError(f"Unknown landmark backend {name!r}; choose one of {', '.join(BACKENDS)}.")
    with _cache_lock:
        if name == "auto":
            if _fan_failed or not _fan_may_load():
                return _built("dlib")
            try:
                return _built("face_alignment")
            except BackendUnavailable as error:
                _fan_failed = True
                logger.warning("face_alignment unavailable, aligning with dlib: %s", error)
                return _built("dlib")
        return _built(name)


def _fan_may_load() -> bool:
    if importlib.util.find_spec("face_alignment") is None:
        return False
    return fan_weights_present() or not offline()


def _built(name: str) -> LandmarkBackend:
    if name not in _cache:
        _cache[name] = DlibLandmarks(_hog()) if name == "dlib" else FanLandmarks(_hog())
    return _cache[name]


def _hog() -> HogDetector:
    global _hog_detector
    if _hog_detector is None:
        _hog_detector = HogDetector()
    return _hog_detector


class HogDetector:
    """dlib's HOG + linear SVM frontal detector (handles roll up to about ±30°)."""

    def __init__(self) -> None:
        dlib = _import_dlib()
        self._detector = dlib.get_frontal_face_detector()
        self._lock = threading.Lock()

    def __call__(self, gray: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        """Confident face boxes in `gray`'s pixel coordinates, each with its SVM score."""
        height, width = gray.shape
        longest = max(height, width)
        scale = min(max(longest, DETECT_MIN_SIDE), DETECT_MAX_SIDE) / longest
        small = gray
        if scale != 1.0:
            size = (round(width * scale), round(height * scale))
            interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            small = cv2.resize(gray, size, interpolation=interpolation)
        with self._lock:
            rects, scores, _ = self._detector.run(small, 0, 0.0)
        found = [
            (tuple((v + 0.5) / scale - 0.5 for v in (r.left(), r.top(), r.right(), r.bottom())), s)
            for r, s in zip(rects, scores, strict=True)
        ]
        if not found:
            return []
        best = max(s for _, s in found)
        return [(box, s) for box, s in found if s >= min(CONFIDENT_SCORE, best)]


class DlibLandmarks:
    """HOG boxes + dlib's 68-point shape predictor; offline, non-commercial model (see above)."""

    name = "dlib"

    def __init__(self, detector: HogDetector) -> None:
        dlib = _import_dlib()
        self._dlib = dlib
        self._detector = detector
        self._predictor = dlib.shape_predictor(dlib_model_path())
        self._lock = threading.Lock()

    def __call__(self, rgb: np.ndarray) -> list[Face]:
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        return [Face(box, self._points(gray, box), score) for box, score in self._detector(gray)]

    def fit(self, rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """68 landmarks for a face known to lie in `box` (no detection, ~2 ms)."""
        return self._points(rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), box)

    def _points(self, gray: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        rect = self._dlib.rectangle(*(round(v) for v in box))
        with self._lock:
            shape = self._predictor(gray, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


class FanLandmarks:
    """HOG boxes + FAN heatmap landmarks (CPU, no test-time flip, no torch.compile)."""

    name = "face_alignment"

    def __init__(self, detector: HogDetector) -> None:
        if importlib.util.find_spec("face_alignment") is None:
            raise BackendUnavailable(
                "The face_alignment backend needs `pip install face-alignment`; "
                "or use backend='dlib'."
            )
        if offline() and not fan_weights_present():
            raise BackendUnavailable(
                f"face_alignment needs its weights at {fan_weights_path()}, and offline mode "
                "(FADER_OFFLINE / HF_HUB_OFFLINE) forbids downloading them. Place the file there, "
                "unset offline mode, or use backend='dlib'."
            )
        import face_alignment  # optional, and slow to import (numba): only when FAN is used

        self._detector = detector
        try:
            # "folder" builds no detector network (no weights); boxes are passed in per call.
            # compile=False: torch.compile costs minutes on a CPU for no gain here.
            self._fan = face_alignment.FaceAlignment(
                face_alignment.LandmarksType.TWO_D,
                device="cpu",
                flip_input=False,
                face_detector="folder",
                compile=False,
            )
        except Exception as error:  # download or load failure: report it as unavailable
            raise BackendUnavailable(
                f"face_alignment could not load its weights ({error}); "
                f"place {FAN_WEIGHTS} in {os.path.dirname(fan_weights_path())} or use "
                "backend='dlib'."
            ) from error
        self._lock = threading.Lock()

    def __call__(self, rgb: np.ndarray) -> list[Face]:
        found = self._detector(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        if not found:
            return []
        with self._lock:
            points = self._fan.get_landmarks_from_image(rgb, detected_faces=[b for b, _ in found])
        return [
            Face(box, np.asarray(p, dtype=np.float64)[:, :2], score)
            for (box, score), p in zip(found, points, strict=True)
        ]

    def fit(self, rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """68 landmarks for a face known to lie in `box` (no detection; FAN's ~0.3 s)."""
        with self._lock:
            (points,) = self._fan.get_landmarks_from_image(rgb, detected_faces=[box])
        return np.asarray(points, dtype=np.float64)[:, :2]


def _import_dlib():
    try:
        import dlib  # optional: the error below says how to install it
    except ImportError as error:
        raise BackendUnavailable(
            "The dlib backend needs `pip install dlib-bin face-recognition-models`."
        ) from error
    return dlib


def dlib_model_path() -> str:
    # Importing face_recognition_models fails on pkg_resources (gone from setuptools), so find
    # its folder without importing it.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable(
            "The dlib backend needs the 68-point model: `pip install face-recognition-models`."
        )
    folder = next(iter(spec.submodule_search_locations))
    return os.path.join(folder, "models", "shape_predictor_68_face_landmarks.dat")
