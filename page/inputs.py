"""The page's inputs, each refusing what it must before a handler sees it: photos and camera
frames through the one gate (`fader.photo`), sliders that hand over what was typed, the faces to
edit, and text capped in length.

Gradio's front end draws a component by its class name: each of these subclasses one of
Gradio's with `is_template`, so the page looks as Gradio's own.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from fader.editor import MAX_FACES
from fader.photo import bytes_from_data_url, check_size, load_frame, too_large_message
from fader.photo_store import ID_CHARS

MAX_NAME_CHARS = 200  # a model name (a Hub repo id, a folder) or an attribute name
MAX_NUMBER_CHARS = 32  # a number sent as text


@dataclass(frozen=True)
class RejectedPhoto:
    """An input refused before decoding; the handlers show `message` in the status area."""

    message: str


Photo = str | bytes | RejectedPhoto | None  # what the photo component hands a handler


def gate(payload: Any, accept: Callable[[Any], Any]) -> Any:
    """`payload` through `accept` (`fader.photo`'s gate) instead of Gradio's own decoding, its
    refusals handed on as a `RejectedPhoto` (shown on the page) rather than a server error."""
    if payload is None:
        return None
    try:
        return accept(payload)
    except ValueError as error:
        return RejectedPhoto(str(error))
    except Image.DecompressionBombError:  # PIL refuses it from the header
        return RejectedPhoto(too_large_message())
    except Exception:
        return RejectedPhoto(
            "This file is not an image we can read. Upload a JPEG, PNG, WebP or GIF photo."
        )


def within_caps(payload: Any, max_chars: int, max_items: int = 1) -> None:
    """Refuse a value longer than `max_chars` (a list: more than `max_items` values) before
    Gradio's own checks, whose messages echo the value whole."""
    values = payload if isinstance(payload, list) else [payload]
    if len(values) > max_items or any(isinstance(v, str) and len(v) > max_chars for v in values):
        raise gr.Error(f"This input takes at most {max_items} value(s) of {max_chars} chars.")


# Each gate is a class's `preprocess`, not one replaced on an instance: when an event updates a
# component (an example's click sets the photo, a model switch sets the sliders), Gradio keeps for
# that session a new instance of the component's class, made from the same arguments, and an
# instance's own replacement was gone from it (seen: a bad upload after an example reached
# Gradio's own decoding). `is_template` draws each with its base's front end, and no class
# redefines `__init__`: Gradio reads a component's settings from that signature.


def photo_input(**kwargs: Any) -> "PhotoInput":
    """The photo: every input route — upload, `data:` URL, remote URL, a path through the API —
    passes one byte cap before anything is decoded. A `data:` URL is decoded to memory (bytes;
    no file is left behind); the others arrive as a file in Gradio's cache. Gradio does not
    decode the file (`image_mode=None`: its preprocess reads only the header), and
    `fader.photo.load_photo` decides (pixel caps included) before any pixels are decoded."""
    return PhotoInput(type="filepath", image_mode=None, **kwargs)


def frame_input(**kwargs: Any) -> "CameraFrames":
    """A streaming camera whose frames pass the photo gate (byte cap, pixel cap from the header)
    and arrive at most `fader.photo.MAX_FRAME_SIDE` pixels a side, as H×W×3 uint8 RGB. The
    browser sends each frame as a JPEG `data:` URL; a frame uploaded first arrives as a file."""
    return CameraFrames(type="numpy", **kwargs)


class PhotoInput(gr.Image):
    """`photo_input`'s component."""

    is_template = True

    def preprocess(self, payload: Any) -> Photo:
        return gate(payload, self._accept)

    def _accept(self, payload: Any) -> Photo:
        if payload.url and payload.url.startswith("data:"):
            return bytes_from_data_url(payload.url)
        if payload.path and os.path.isfile(payload.path):
            check_size(payload.path)
        return super().preprocess(payload)


class CameraFrames(gr.Image):
    """`frame_input`'s component."""

    is_template = True

    def preprocess(self, payload: Any) -> np.ndarray | RejectedPhoto | None:
        return gate(payload, self._accept)

    @staticmethod
    def _accept(payload: Any) -> np.ndarray:
        if payload.url and payload.url.startswith("data:"):
            return load_frame(bytes_from_data_url(payload.url))
        if payload.path and os.path.isfile(payload.path):
            return load_frame(payload.path)
        raise ValueError("Send camera frames as a base64 data: URL or an uploaded file.")


class TypedSlider(gr.Slider):
    """A slider whose number box hands the app what was typed: a number past either end, or
    None for a box with no number in it ("--"). Gradio's own slider refuses such a value with
    an error the page never shows, and box, slider, picture and download then drift apart; here
    the edits clamp it (`clamp`), `settle` sets the box to the clamped number and says so, the
    page's edits wait out a box with no number (`typing`), and the page's script
    (assets/page.js) puts back the box's last number when the visitor leaves it."""

    is_template = True

    def preprocess(self, payload: float | None) -> float | None:
        return typed_number(payload)


def typed_number(payload: Any) -> float | None:
    """What a `TypedSlider` hands over: the number sent, or None for a box with no number."""
    within_caps(payload, MAX_NUMBER_CHARS)
    try:
        return None if payload is None else float(payload)
    except (TypeError, ValueError, OverflowError):  # Python's message echoes the value
        raise gr.Error("A slider takes a number.") from None


class CountSlider(gr.Slider):
    """Gradio's slider (its range checked), a number sent as text capped in length first."""

    is_template = True

    def preprocess(self, payload: float) -> float:
        within_caps(payload, MAX_NUMBER_CHARS)
        return super().preprocess(payload)


class NameChoice(gr.Dropdown):
    """A name chosen or typed (a model: a Hub repo id, a folder; an attribute), capped in
    length."""

    is_template = True

    def preprocess(self, payload: Any) -> Any:
        within_caps(payload, MAX_NAME_CHARS)
        return super().preprocess(payload)


class PhotoId(gr.Textbox):
    """A photo's id: at most as long as the ids the store gives out."""

    is_template = True

    def preprocess(self, payload: Any) -> Any:
        within_caps(payload, ID_CHARS)
        return super().preprocess(payload)


class FaceChoice(gr.CheckboxGroup):
    """The faces to edit, by number, at most `MAX_FACES`; None (an API client leaving the list
    out) is every face, where Gradio's own checkbox group fails on it with a server error."""

    is_template = True

    def preprocess(self, payload: list | None) -> list | None:
        within_caps(payload, MAX_NAME_CHARS, MAX_FACES)
        return None if payload is None else super().preprocess(payload)
