"""The page's inputs, each refusing what it must before a handler sees it: photos and camera
frames through the one gate (`fader.photo`), sliders that hand over what was typed, the faces to
edit, and text capped in length.

Gradio's front end draws a component by its class name: these replace an instance's
`preprocess`, or subclass with `is_template`, so the page looks as Gradio's own.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from fader.photo import bytes_from_data_url, check_size, load_frame, too_large_message

MAX_NAME_CHARS = 200  # a model name (a Hub repo id, a folder) or an attribute name
MAX_NUMBER_CHARS = 32  # a number sent as text


@dataclass(frozen=True)
class RejectedPhoto:
    """An input refused before decoding; the handlers show `message` in the status area."""

    message: str


Photo = str | bytes | RejectedPhoto | None  # what the photo component hands a handler


def gated(component: gr.Image, accept: Callable[[Any], Any]) -> gr.Image:
    """`component` whose input goes through `accept` (`fader.photo`'s gate) instead of Gradio's
    own decoding, and whose refusals reach the handler as a `RejectedPhoto` (shown on the page)
    rather than a server error. The instance's `preprocess` is replaced rather than subclassed:
    Gradio's front end renders components by class name."""

    def gate(payload: Any) -> Any:
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

    component.preprocess = gate
    return component


def photo_input(**kwargs: Any) -> gr.Image:
    """gr.Image whose every input route — upload, `data:` URL, remote URL, a path through the
    API — passes one byte cap before anything is decoded. A `data:` URL is decoded to memory
    (bytes; no file is left behind); the others arrive as a file in Gradio's cache.

    `image_mode=None` keeps Gradio from decoding the file: its preprocess only reads the header,
    and `fader.photo.load_photo` decides (pixel caps included) before any pixels are decoded."""
    image = gr.Image(type="filepath", image_mode=None, **kwargs)
    preprocess = image.preprocess

    def accept(payload: Any) -> Photo:
        if payload.url and payload.url.startswith("data:"):
            return bytes_from_data_url(payload.url)
        if payload.path and os.path.isfile(payload.path):
            check_size(payload.path)
        return preprocess(payload)

    return gated(image, accept)


def frame_input(**kwargs: Any) -> gr.Image:
    """A streaming camera whose frames pass the photo gate (byte cap, pixel cap from the header)
    and arrive at most `fader.photo.MAX_FRAME_SIDE` pixels a side, as H×W×3 uint8 RGB. The
    browser sends each frame as a JPEG `data:` URL; a frame uploaded first arrives as a file."""

    def accept(payload: Any) -> np.ndarray:
        if payload.url and payload.url.startswith("data:"):
            return load_frame(bytes_from_data_url(payload.url))
        if payload.path and os.path.isfile(payload.path):
            return load_frame(payload.path)
        raise ValueError("Send camera frames as a base64 data: URL or an uploaded file.")

    return gated(gr.Image(type="numpy", **kwargs), accept)


def capped(component: gr.components.Component, max_chars: int, max_items: int = 1) -> None:
    """`component` refuses a value longer than `max_chars` (a list: more than `max_items`
    values) before Gradio's own checks, whose messages echo the value whole."""
    preprocess = component.preprocess

    def check(payload: Any) -> Any:
        values = payload if isinstance(payload, list) else [payload]
        if len(values) > max_items or any(
            isinstance(v, str) and len(v) > max_chars for v in values
        ):
            raise gr.Error(f"This input takes at most {max_items} value(s) of {max_chars} chars.")
        return preprocess(payload)

    component.preprocess = check


class TypedSlider(gr.Slider):
    """A slider whose number box hands the app what was typed: a number past either end, or
    None for a box with no number in it ("--"). Gradio's own slider refuses such a value with
    an error the page never shows, and box, slider, picture and download then drift apart; here
    the edits clamp it (`clamp`), `settle` sets the box to the clamped number and says so, the
    page's edits wait out a box with no number (`typing`), and the page's script
    (assets/page.js) puts back the box's last number when the visitor leaves it."""

    is_template = True  # drawn by Gradio's own slider: the front end picks it by the base's name

    def preprocess(self, payload: float | None) -> float | None:
        return None if payload is None else float(payload)


class FaceChoice(gr.CheckboxGroup):
    """The faces to edit, by number; None (an API client leaving the list out) is every face,
    where Gradio's own checkbox group fails on it with a server error."""

    is_template = True  # drawn by Gradio's own checkbox group

    def preprocess(self, payload: list | None) -> list | None:
        return None if payload is None else super().preprocess(payload)
