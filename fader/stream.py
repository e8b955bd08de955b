"""Edit a stream of frames as it plays (a webcam, a video being read), the face tracked.

A photo is aligned with a full detection (`fader.align.faces_in`: HOG twice, ~0.15 s); a live
stream cannot pay that per frame. So the largest face is detected once, then followed: its 68
landmarks are carried to the next frame by pyramidal Lucas–Kanade optical flow (checked
forwards and backwards), the detector's box is moved by the similarity those points moved by,
and the landmarks are re-fitted inside it by the backend's shape predictor (~2 ms), which keeps
the track from drifting. A full detection runs again every `detect_every` frames, or at once
when the track is lost (points not followed, or the re-fit far from them). A frame with no face
passes through unedited, with a note.

Every frame is new pixels, so each is encoded and decoded (no latent is kept), with the
editor's "keep photo detail" s: edited = D(z, y) + s·(x − D(z, y₀)), y₀ the sliders at 0, the
part s·x taken from the frame itself at paste-back, so at y = y₀ and s = 1 the frame comes back
as it was. `edit_stream` is the loop for scripts;
`FaceStream` edits one frame at a time for callers that receive frames one by one (the app), and
`Streams` keeps one per session, dropped when the session stops or goes quiet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import torch
from PIL import Image

from fader.align import AlignedFace, aligned_on, apply_affine, faces_in
from fader.attributes import neutral_values
from fader.crop_edit import decode_crops, detail_strength, encode_crops, paste_crops
from fader.landmarks import get_backend
from fader.model import FaderNetwork
from fader.photo import centre_square

DETECT_EVERY = 10
"""Frames between full detections while a face is tracked: catches a larger face walking in
and any slow drift, at a tenth of the detector's cost."""
SEARCH_EVERY = 3
"""Frames between detections while no face is in view: a face walking in is found within a
fifth of a second, and the frames between pass through at no cost."""
FLOW = {"winSize": (21, 21), "maxLevel": 3}  # Lucas–Kanade window and pyramid depth
FLOW_ROUND_TRIP = 1.5
"""Pixels a landmark may miss its start by when flowed forwards then back, and still count."""
MIN_FOLLOWED = 0.6
"""Fraction of the 68 landmarks the flow must follow, or the face is taken as lost."""
MAX_REFIT_SHIFT = 0.08
"""Mean distance from re-fitted landmarks to the flowed ones, as a fraction of the face's
size, past which the re-fit found something else (the face left, a cut) and the track is lost."""
NO_FACE = "No face in view: frames pass through unedited."


@dataclass(frozen=True)
class EditedFrame:
    image: np.ndarray
    """H×W×3 uint8 RGB: the frame with the edit pasted back, or the frame itself."""
    edited: bool
    """Whether a face (or, for a whole-image model, the centre square) was edited."""
    detected: bool
    """Whether a full detection ran on this frame (else the face was tracked, or none sought)."""
    note: str
    """What the viewer should know ("" when all is well)."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Where the time went: detection, tracking, warp, encode, decode, paste_back."""


def as_rgb(frame: np.ndarray | Image.Image) -> np.ndarray:
    """A frame as H×W×3 uint8 RGB; a `ValueError` saying what is expected for anything else."""
    if isinstance(frame, Image.Image):
        return np.asarray(frame.convert("RGB"))
    frame = np.asarray(frame)
    if frame.ndim == 3 and frame.shape[2] == 4:
        frame = frame[..., :3]
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(
            f"A frame must be an RGB image: a PIL image or an H×W×3 uint8 array, not an array of "
            f"shape {frame.shape} and type {frame.dtype}."
        )
    if min(frame.shape[:2]) < 32:
        raise ValueError(f"A frame must be at least 32 pixels on a side, not {frame.shape[:2]}.")
    return frame


class FaceTracker:
    """The largest face from frame to frame: detected every `detect_every` frames or when lost,
    followed by optical flow and re-fitted landmarks in between."""

    def __init__(self, size: int, aligner: str = "auto", detect_every: int = DETECT_EVERY):
        if detect_every < 1:
            raise ValueError(f"detect_every must be at least 1 frame, not {detect_every}.")
        self.size, self.aligner, self.detect_every = size, aligner, detect_every
        self.backend = get_backend(aligner)
        self._gray: np.ndarray | None = None  # the previous frame, grey
        self._face: AlignedFace | None = None  # the face in it, if one is tracked
        self._since_detection = 0

    def find(self, rgb: np.ndarray, seconds: dict[str, float]) -> tuple[AlignedFace | None, bool]:
        """The face in this frame (or None) and whether a full detection ran; the time spent is
        added to `seconds` under "detection" (its warp included), "tracking" and "warp"."""
        start = time.perf_counter()
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        tracked = self._face is not None
        every = self.detect_every if tracked else SEARCH_EVERY
        due = self._gray is None or self._gray.shape != gray.shape or self._since_detection >= every
        face = self._follow(rgb, gray, seconds, start) if tracked and not due else None
        detected = due or (tracked and face is None)  # lost: look again at once
        if detected:
            start = time.perf_counter()
            faces = faces_in(Image.fromarray(rgb), self.size, self.aligner)
            face = faces[0] if faces else None
            seconds["detection"] = time.perf_counter() - start
            self._since_detection = 0
        self._gray, self._face = gray, face
        self._since_detection += 1
        return face, detected

    def _follow(
        self, rgb: np.ndarray, gray: np.ndarray, seconds: dict[str, float], start: float
    ) -> AlignedFace | None:
        """The tracked face moved into this frame, or None when it was lost."""
        previous, before = self._face, self._gray
        assert previous is not None and before is not None
        points = previous.landmarks.astype(np.float32).reshape(-1, 1, 2)
        ahead, found, _ = cv2.calcOpticalFlowPyrLK(before, gray, points, None, **FLOW)
        back, found_back, _ = cv2.calcOpticalFlowPyrLK(gray, before, ahead, None, **FLOW)
        round_trip = np.linalg.norm((back - points).reshape(-1, 2), axis=1)
        followed = (found.ravel() == 1) & (found_back.ravel() == 1) & (round_trip < FLOW_ROUND_TRIP)
        landmarks = box = None
        if followed.mean() >= MIN_FOLLOWED:
            moved, _ = cv2.estimateAffinePartial2D(points[followed], ahead[followed])
            if moved is not None:
                box = moved_box(previous.box, moved)
                landmarks = self.backend.fit(rgb, box)
                shift = np.linalg.norm(landmarks[followed] - ahead.reshape(-1, 2)[followed], axis=1)
                if shift.mean() > MAX_REFIT_SHIFT * face_size(landmarks):
                    landmarks = None
        seconds["tracking"] = time.perf_counter() - start
        if landmarks is None:
            return None
        start = time.perf_counter()
        face = aligned_on(Image.fromarray(rgb), landmarks, self.size, previous.backend)
        seconds["warp"] = time.perf_counter() - start
        return replace(face, box=box)  # the detector-shaped box, for the next frame's re-fit

    def reset(self) -> None:
        self._gray = self._face = None


def moved_box(
    box: tuple[float, float, float, float], moved: np.ndarray
) -> tuple[float, float, float, float]:
    """The axis-aligned detector box carried by a similarity: its centre moved, its sides
    scaled (the shape predictor expects a box shaped like the detector's, upright)."""
    x1, y1, x2, y2 = box
    ((cx, cy),) = apply_affine(moved, np.array([[(x1 + x2) / 2, (y1 + y2) / 2]]))
    half = np.sqrt(abs(np.linalg.det(moved[:, :2]))) * np.array([x2 - x1, y2 - y1]) / 2
    return (cx - half[0], cy - half[1], cx + half[0], cy + half[1])


def face_size(landmarks: np.ndarray) -> float:
    """The landmarks' bounding-box diagonal, in pixels."""
    return float(np.linalg.norm(landmarks.max(axis=0) - landmarks.min(axis=0)))


class FaceStream:
    """One stream's edit, frame by frame: the tracker's state lives here, so one object per
    camera or video (not thread-safe; `Streams` serialises each session's frames)."""

    def __init__(
        self, model: FaderNetwork, aligner: str = "auto", detect_every: int = DETECT_EVERY
    ):
        # In place, as the Editor does: channels-last runs the decoder ~25% faster on a CPU.
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.size = model.config.image_size
        self.start = neutral_values(model.config)  # y₀ of the detail kept: no classifier here
        self.tracker = (
            FaceTracker(self.size, aligner, detect_every) if model.config.aligns_faces else None
        )

    def edit(
        self,
        frame: np.ndarray | Image.Image,
        values: Mapping[str, float],
        detail: float | None = None,
    ) -> EditedFrame:
        """`frame` with the largest face edited to the slider `values`, keeping `detail` (s, 0…1;
        None: the model's default) of the photo's own detail; a frame without a face comes back
        as it was."""
        detail = detail_strength(self.model.config, detail)
        rgb = as_rgb(frame)
        seconds: dict[str, float] = {}
        photo = Image.fromarray(rgb)
        if self.tracker is None:
            crop, faces, detected = centre_square(photo, self.size), [], False
        else:
            face, detected = self.tracker.find(rgb, seconds)
            if face is None:
                return EditedFrame(rgb, False, detected, NO_FACE, seconds)
            crop, faces = face.crop, [face]
        start = time.perf_counter()
        encoded = encode_crops(self.model, [crop], self.start if detail else None)
        seconds["encode"] = time.perf_counter() - start
        start = time.perf_counter()
        ((edited,),) = decode_crops(self.model, encoded, [values], [0], detail)
        seconds["decode"] = time.perf_counter() - start
        start = time.perf_counter()
        image = np.asarray(paste_crops(photo, [edited], faces, crop, detail))
        seconds["paste_back"] = time.perf_counter() - start
        return EditedFrame(image, True, detected, "", seconds)


def edit_stream(
    frames: Iterable[np.ndarray | Image.Image],
    model: FaderNetwork,
    values: Mapping[str, float] | Callable[[], Mapping[str, float]],
    detail: float | None = None,
    aligner: str = "auto",
    detect_every: int = DETECT_EVERY,
) -> Iterator[EditedFrame]:
    """Each of `frames` edited as it arrives (lazily: frames are read one at a time).

    `values` are the slider values, or a function read before every frame so a script can
    change the edit while the stream plays. Frames are RGB: PIL images or H×W×3 uint8 arrays.
    `detail` is "keep photo detail" s (None: the model's default, 1 for face models).
    """
    stream = FaceStream(model, aligner, detect_every)
    for frame in frames:
        yield stream.edit(frame, values() if callable(values) else values, detail)


IDLE_SECONDS = 30.0
"""A session whose stream sent no frame for this long is dropped (a closed tab sends no stop)."""
MAX_STREAMS = 32
"""Streams kept at once; past it the quietest is dropped (each holds two frames and a face)."""
CLOSED_GRACE = 2.0
"""Seconds after a session's stream is closed during which its frames keep nothing: frames sent
before the stop may still be waiting for a turn, and must not open the stream again."""


class Streams:
    """One `FaceStream` per session and model, made on its first frame, dropped on `close`,
    after IDLE_SECONDS without a frame, or when MAX_STREAMS would be exceeded. A frame that
    arrives within CLOSED_GRACE of its session's `close` is edited by a stream of its own,
    kept nowhere."""

    def __init__(
        self,
        idle_seconds: float = IDLE_SECONDS,
        max_streams: int = MAX_STREAMS,
        closed_grace: float = CLOSED_GRACE,
    ):
        self.idle_seconds, self.max_streams = idle_seconds, max_streams
        self.closed_grace = closed_grace
        self._streams: dict[tuple[str, str], tuple[FaceStream, threading.Lock, float]] = {}
        self._closed: dict[str, float] = {}  # session → when its stream was closed
        self._lock = threading.Lock()

    def edit(
        self,
        session: str,
        model_name: str,
        make: Callable[[], FaceStream],
        frame: np.ndarray | Image.Image,
        values: Mapping[str, float],
        detail: float | None = None,
    ) -> EditedFrame:
        """`frame` edited by the session's stream for `model_name` (made by `make` if new)."""
        key = (session, model_name)
        now = time.monotonic()
        with self._lock:
            self._drop_idle(now)
            stream, lock, _ = self._streams.get(key) or (None, threading.Lock(), now)
            if session in self._closed:  # sent before the stop: edited, kept nowhere
                stream = make()
            else:
                if stream is None:
                    self._close(session)  # another model's stream in this session is over
                    while len(self._streams) >= self.max_streams:
                        del self._streams[min(self._streams, key=lambda k: self._streams[k][2])]
                    stream = make()
                self._streams[key] = (stream, lock, now)
        with lock:  # one frame of a session at a time: the tracker holds the previous one
            return stream.edit(frame, values, detail)

    def close(self, session: str) -> None:
        """Free what `session` holds (its stream stopped, its tab closed)."""
        with self._lock:
            self._close(session)
            self._closed[session] = time.monotonic()

    def _close(self, session: str) -> None:
        for key in [k for k in self._streams if k[0] == session]:
            del self._streams[key]

    def __len__(self) -> int:
        return len(self._streams)

    def _drop_idle(self, now: float) -> None:
        for session in [s for s, t in self._closed.items() if now - t >= self.closed_grace]:
            del self._closed[session]
        for key in [k for k, (_, _, t) in self._streams.items() if now - t > self.idle_seconds]:
            del self._streams[key]
