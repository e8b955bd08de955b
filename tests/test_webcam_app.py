"""The app's live webcam handlers as plain functions: a frame in, the edited frame out."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from fader.library import ModelLibrary
from fader.stream import NO_FACE, Streams
from page.webcam import live_frame, live_stop
from tests.builders import save_model
from tests.clips import clip, no_face


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> ModelLibrary:
    model = save_model(tmp_path_factory.mktemp("model") / "face", "celeba", ["Smiling", "Male"])
    return ModelLibrary([model], aligner="dlib")


def shown(html: str) -> tuple[np.ndarray, str]:
    """The frame an <img> from `live_image` shows, and its data-edited flag."""
    src = html.split('src="', 1)[1].split('"', 1)[0]
    edited = html.split('data-edited="', 1)[1][0]
    image = Image.open(io.BytesIO(base64.b64decode(src.removeprefix("data:image/jpeg;base64,"))))
    return np.asarray(image), edited


def test_a_face_frame_comes_back_edited_and_a_faceless_one_as_it_was(library):
    streams = Streams()
    name = library.names[0]
    face = clip(1, 0)[0]
    html, note = live_frame(library, name, face, 1.0, 0.0, session="s", streams=streams)
    image, edited = shown(html)
    assert edited == "1" and note == "" and image.shape == face.shape
    assert np.abs(image.astype(int) - face).mean() > 1  # the face was redrawn
    empty = no_face()
    html, note = live_frame(library, name, empty, 1.0, 0.0, session="s", streams=streams)
    image, edited = shown(html)
    assert edited == "0" and note == NO_FACE
    assert np.abs(image.astype(int) - empty).mean() < 3  # only the JPEG's loss


def test_stopping_frees_the_session_stream_and_no_other(library):
    streams = Streams()
    name = library.names[0]
    for session in ("alice", "bob"):
        live_frame(library, name, no_face(), session=session, streams=streams)
    assert len(streams) == 2
    assert live_stop(library, session="alice", streams=streams) == "Camera stopped."
    assert len(streams) == 1


def test_no_frame_yet_shows_nothing(library):
    assert live_frame(library, library.names[0], None, session="s", streams=Streams()) == (
        "",
        "",
    )


def test_non_finite_slider_is_refused_with_a_message(library):
    with pytest.raises(ValueError, match="finite"):
        live_frame(
            library, library.names[0], no_face(), float("nan"), session="s", streams=Streams()
        )
