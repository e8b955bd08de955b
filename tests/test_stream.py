"""Editing a stream of frames: a real photo moving across a clip the test makes, then no face."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from fader.align import anchor_points, faces_in
from fader.model import FaderConfig, FaderNetwork
from fader.stream import (
    DETECT_EVERY,
    NO_FACE,
    SEARCH_EVERY,
    FaceStream,
    FaceTracker,
    Streams,
    edit_stream,
)
from tests.clips import clip

FACE_FRAMES, EMPTY_FRAMES = 36, 12


def model(preprocessing: str = "celeba") -> FaderNetwork:
    torch.manual_seed(0)
    config = FaderConfig(
        attributes=["Smiling", "Male"],
        image_size=64,
        init_fm=8,
        max_fm=64,
        n_layers=4,
        preprocessing=preprocessing,
    )
    return FaderNetwork(config)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return clip(FACE_FRAMES, EMPTY_FRAMES)


@pytest.fixture(scope="module")
def edited(frames):
    return list(edit_stream(frames, model(), {"Smiling": 1.0}, aligner="dlib"))


def test_every_face_frame_is_edited_and_faceless_frames_pass_through_unchanged(frames, edited):
    assert len(edited) == len(frames)
    for frame, result in zip(frames[:FACE_FRAMES], edited[:FACE_FRAMES], strict=True):
        assert result.edited and result.note == ""
        assert result.image.shape == frame.shape and result.image.dtype == np.uint8
        changed = np.abs(result.image.astype(int) - frame).max(axis=2) > 0
        assert 0.01 < changed.mean() < 0.5  # the face, not the whole frame
    for frame, result in zip(frames[FACE_FRAMES:], edited[FACE_FRAMES:], strict=True):
        assert not result.edited and result.note == NO_FACE
        assert np.array_equal(result.image, frame)


def test_full_detections_run_only_every_few_frames(edited):
    detected = [result.detected for result in edited]
    assert detected[0]
    assert sum(detected[:FACE_FRAMES]) <= math.ceil(FACE_FRAMES / DETECT_EVERY) + 1
    assert sum(detected[FACE_FRAMES:]) <= math.ceil(EMPTY_FRAMES / SEARCH_EVERY) + 1
    tracked = [r for r in edited[:FACE_FRAMES] if not r.detected]
    assert len(tracked) >= FACE_FRAMES - math.ceil(FACE_FRAMES / DETECT_EVERY) - 1
    assert all("tracking" in r.seconds and "detection" not in r.seconds for r in tracked)
    assert all({"encode", "decode", "paste_back"} <= r.seconds.keys() for r in edited[:FACE_FRAMES])


def test_tracked_face_stays_where_a_fresh_detection_finds_it(frames):
    tracker = FaceTracker(64, "dlib")
    for i, frame in enumerate(frames[:FACE_FRAMES]):
        face, detected = tracker.find(frame, {})
        if detected or i % 5:
            continue
        (fresh,) = faces_in(Image.fromarray(frame), 64, "dlib")
        expected = anchor_points(fresh.landmarks)
        miss = np.linalg.norm(anchor_points(face.landmarks) - expected, axis=1)
        eye_distance = np.linalg.norm(expected[0] - expected[1])
        assert miss.max() < 0.1 * eye_distance, f"frame {i}: tracked face {miss} px off"


def test_a_cut_to_a_faceless_frame_is_noticed_at_once(frames):
    stream = FaceStream(model(), "dlib")
    for frame in frames[:12]:
        stream.edit(frame, {})
    cut = stream.edit(frames[FACE_FRAMES], {})
    assert cut.detected and not cut.edited


def test_full_detail_at_the_start_gives_the_frame_back(frames):
    stream = FaceStream(model(), "dlib")
    frame = frames[0]
    kept = stream.edit(frame, {}, detail=1.0).image.astype(int)
    plain = stream.edit(frame, {}, detail=0.0).image.astype(int)
    assert np.abs(kept - frame).mean() < 0.25 * np.abs(plain - frame).mean()
    assert np.abs(kept - frame).max(axis=2).mean() < 2.0


def test_values_are_read_before_every_frame(frames):
    asked = []

    def values() -> dict[str, float]:
        asked.append(len(asked))
        return {"Smiling": len(asked) % 2 * 2.0}

    results = list(edit_stream(frames[:4], model(), values, aligner="dlib"))
    assert len(asked) == 4
    assert not np.array_equal(results[0].image, results[1].image)


def test_pil_frames_and_whole_image_models():
    photo = Image.fromarray(clip(1, 0)[0])
    (result,) = edit_stream([photo], model("center"), {"Smiling": 1.0})
    assert result.edited and result.image.shape == (480, 640, 3)
    side = 480  # the centre square is edited, the sides are left as they were
    assert np.array_equal(result.image[:, :80], np.asarray(photo)[:, :80])
    assert not np.array_equal(result.image[:, 80 : 80 + side], np.asarray(photo)[:, 80 : 80 + side])


@pytest.mark.parametrize(
    "frame, message",
    [
        (np.zeros((48, 64), np.uint8), "H×W×3 uint8"),
        (np.zeros((48, 64, 3), np.float32), "H×W×3 uint8"),
        (np.zeros((8, 8, 3), np.uint8), "at least 32 pixels"),
    ],
)
def test_a_frame_that_is_not_an_rgb_image_is_refused_with_what_to_send(frame, message):
    with pytest.raises(ValueError, match=message):
        FaceStream(model(), "dlib").edit(frame, {})


def test_detail_out_of_range_is_refused():
    with pytest.raises(ValueError, match="between 0 and 1"):
        FaceStream(model(), "dlib").edit(np.zeros((64, 64, 3), np.uint8), {}, detail=2.0)


def test_streams_are_freed_on_close_on_switch_and_when_full(frames):
    streams = Streams(max_streams=2)
    made = []

    def make() -> FaceStream:
        made.append(FaceStream(model("center")))
        return made[-1]

    frame = frames[0]
    streams.edit("alice", "m", make, frame, {})
    streams.edit("alice", "m", make, frame, {})
    assert len(made) == 1 and len(streams) == 1  # one stream per session, kept between frames
    streams.edit("alice", "other model", make, frame, {})
    assert len(made) == 2 and len(streams) == 1  # the old model's stream is over
    streams.edit("bob", "m", make, frame, {})
    streams.edit("carol", "m", make, frame, {})
    assert len(streams) == 2  # full: the quietest (alice) made room
    streams.close("bob")
    assert len(streams) == 1
    streams.close("carol")
    late = streams.edit("carol", "m", make, frame, {})  # sent before the stop, edited after it
    assert late.image.shape == np.asarray(frame).shape and len(streams) == 0, "late: kept nowhere"
    reopened = Streams(closed_grace=0.0)
    reopened.edit("dave", "m", make, frame, {})
    reopened.close("dave")
    reopened.edit("dave", "m", make, frame, {})
    assert len(reopened) == 1, "after the grace a new stream of the session is kept again"
    idle = Streams(idle_seconds=0.0)
    idle.edit("alice", "m", make, frame, {})
    idle.edit("bob", "m", make, frame, {})
    assert len(idle) == 1  # alice sent nothing since: dropped
