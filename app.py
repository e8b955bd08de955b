"""Fader in the browser: upload a photo, slide attributes, download the edit.

    python app.py                       # the bundled model, http://127.0.0.1:7860
    python app.py --model runs/smile_male --model alice/fader-smiling-male

The same file runs on Hugging Face Spaces. The handlers are plain functions of the model
library and the visitor's session, testable without a server; `build_demo` lays out the page,
then wires the handlers to it. Everything the handlers call lives in `fader/`.
"""

import argparse
import asyncio
import base64
import contextlib
import inspect
import io
import json
import logging
import math
import os
import re
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import torch
from gradio_client import handle_file
from PIL import Image, ImageDraw
from starlette.middleware import Middleware

from fader.align import faces_in
from fader.attributes import SliderKey, api_name, flat_values, plain_words, slider_label
from fader.attributes import slider_keys as model_slider_keys
from fader.editor import MAX_FACES, Editor, EditResult, preview_of
from fader.environment import offline
from fader.heap import return_freed_memory
from fader.library import ModelLibrary, authors_choices, bundled_models, choice_label
from fader.photo import (
    MAX_BYTES,
    bytes_from_data_url,
    check_size,
    load_frame,
    load_photo,
    too_large_message,
)
from fader.photo_store import ID_CHARS
from fader.stream import FaceStream, Streams

MAX_SLIDERS = 16  # Gradio needs components up front; models with fewer hide the rest
MAX_UPLOAD = f"{MAX_BYTES // 2**20}mb"  # the photo cap, as Gradio's upload route takes it
QUEUE_CONCURRENCY = 4  # requests of one event handled at once; more wait in Gradio's queue
TRACK_DOWNLOADS = gr.Progress(track_tqdm=True)  # a handler's default: Gradio fills it per call
LIVE_EDITS = QUEUE_CONCURRENCY  # slider moves in flight at once: their decodes share a batch
EXPORT_WAIT = 0.3  # seconds a slider move's export waits, so the live edit has the CPU
EXPORT_PREFIX = "fader-export-"  # each export's own folder
CACHE_LIFETIME = 3600  # seconds Gradio keeps uploads and exports (checked as often)
# Gradio's queue rebuilds its monitoring summary (a pandas table over its last 10,000 events)
# after every queued event by default; the app has no use for it, so once per 1,000 events over
# the last 1,000 (bench/move_cost.py measures the difference). A host's own values are kept.
GRADIO_SETTINGS = {
    "GRADIO_ANALYTICS_CACHE_FREQUENCY": "1000",
    "GRADIO_ANALYTICS_MAX_EVENTS": "1000",
}
EXAMPLES = Path(__file__).resolve().parent / "assets" / "examples"
log = logging.getLogger("fader.app")
# On a phone the three columns stack: the result goes first and stays at the top while the
# sliders below it are dragged, so the edit is always in view; the sliders keep their end
# labels, which Gradio hides on narrow screens.
CSS = """
/* Room for a model download's bar while it shows (an empty element would hide it), none else */
#model-loading:has(> [data-testid="status-tracker"]:not(.hide)) { min-height: 5em; }
#reset-targets { display: none; }
/* The download's whole name, wrapped, not cut to "fader-digits-thr….png" */
#download .filename, #download .filename .stem { white-space: normal !important;
  overflow-wrap: anywhere; overflow: visible !important; text-overflow: clip !important; }
#download .filename { display: table-cell !important; }
#download .filename .stem, #download .filename .ext { display: inline !important; }
/* On a desktop the result column stays in view while the lower sliders are reached */
@media (min-width: 769px) {
  #result-column { position: sticky; top: 0; align-self: flex-start; }
}
@media (max-width: 768px) {
  #result-column { order: -1; position: sticky; top: 0; z-index: 1000; flex-direction: row;
                   flex-wrap: nowrap; background: var(--body-background-fill); }
  #result-column > * { flex: 1 1 0; min-width: 0 !important; }
  #result-column img { max-height: 26vh; }
  #result-column:not(:has(img)) { display: none; }  /* no empty boxes above the upload */
  #photo { height: 170px !important; }  /* the upload box and the examples on the first screen */
  #slider-column .min_value, #slider-column .max_value { display: inline !important; }
}
"""
# Gradio scopes `css` to its container, so the container's own overflow (hidden, which would
# disable sticky positioning) is overridden from the page's head instead.
HEAD = (
    "<style>.gradio-container { overflow: visible !important; }</style>"
    f"<script>{(Path(__file__).resolve().parent / 'assets' / 'page.js').read_text()}</script>"
)


@dataclass(frozen=True)
class RejectedPhoto:
    """An input refused before decoding; the handlers show `message` in the status area."""

    message: str


Photo = str | bytes | RejectedPhoto | None  # what the photo component hands a handler


def user_errors(handler: Callable) -> Callable:
    """Show what went wrong as a message; never a traceback, never a dead server."""

    @wraps(handler)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except ValueError as error:
            raise gr.Error(shortened(str(error))) from None
        except Exception:
            log.exception("Unexpected error in %s", handler.__name__)
            raise gr.Error("Something went wrong on our side; please try another photo.") from None

    return guarded


# ---- The one gate for every route a photo can take into the app ------------------------------


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


# ---- Every request bounded before Gradio reads it --------------------------------------------

UPLOAD_ROUTE = "/gradio_api/upload"
MAX_UPLOAD_BODY = MAX_BYTES + 2**20  # one photo and its multipart headers
MAX_BODY = -(-MAX_BYTES // 3) * 4 + 2**20  # a photo as a base64 data: URL, and the other inputs
STALLED_UPLOAD = 60.0  # seconds an upload's temporary file may go unwritten before it is removed


class RequestLimits:
    """ASGI middleware in front of Gradio: a body over its route's limit is answered 413 before
    it is read (from `content-length`) or as soon as it passes the limit (bytes counted as they
    come), so no route parses more than a photo's worth. An upload that fails or is cut off
    leaves its temporary file in Gradio's upload folder, outside Gradio's cache sweep; such
    files, once unwritten for `stalled_after` seconds, are removed."""

    def __init__(self, app: Callable, stalled_after: float = STALLED_UPLOAD):
        self.app, self.stalled_after = app, stalled_after

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        upload = scope["path"].endswith(UPLOAD_ROUTE)
        limit = MAX_UPLOAD_BODY if upload else MAX_BODY
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > limit:
            if length.isdigit() and int(length) <= 2 * limit:
                await discard_body(receive)  # so a client that sends it all reads the answer
            return await refuse(send, limit)
        received, status, refused = 0, 0, False

        async def counted() -> dict:
            nonlocal received, refused
            message = await receive()
            received += len(message.get("body", b""))
            if received <= limit:
                return message
            if not (refused or status):
                refused = True
                await refuse(send, limit)
            return {"type": "http.disconnect"}  # what the app reads of the rest

        async def watched(message: dict) -> None:
            nonlocal status
            if refused:
                return  # the app's answer to a body cut off: 413 was answered instead
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except Exception:
            if not refused:
                raise  # not ours: Gradio's error handling answers it
        finally:
            if upload and status != 200:
                folder = Path(scope["app"].uploaded_file_dir)
                asyncio.get_running_loop().call_later(
                    self.stalled_after + 1, remove_stalled_uploads, folder, self.stalled_after
                )


async def discard_body(receive: Callable) -> None:
    while (message := await receive())["type"] == "http.request" and message.get("more_body"):
        pass


async def refuse(send: Callable, limit: int) -> None:
    body = (
        f"Requests up to {limit / 2**20:.0f} MB are accepted; photos up to {MAX_BYTES // 2**20} MB."
    ).encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def remove_stalled_uploads(folder: Path, stalled_after: float) -> None:
    """Gradio's temporary upload files (`tmp…` at the top of its upload folder; a finished
    upload is moved into a folder of its own) unwritten for `stalled_after` seconds."""
    settled = time.time() - stalled_after
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if entry.name.startswith("tmp") and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    if entry.stat().st_mtime < settled:
                        os.unlink(entry.path)


MAX_NAME_CHARS = 200  # a model name (a Hub repo id, a folder) or an attribute name
MAX_MESSAGE_CHARS = 1000  # of an error message: never a visitor's input echoed whole
MAX_NUMBER_CHARS = 32  # a number sent as text


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


def bound_text_inputs(page: "Page") -> None:
    """Each text slot capped to what it needs."""
    capped(page.model_name, MAX_NAME_CHARS)
    capped(page.sweep_attribute, MAX_NAME_CHARS)
    capped(page.photo_id, ID_CHARS)
    capped(page.faces, MAX_NAME_CHARS, MAX_FACES)
    for number in [*page.sliders, page.detail, page.sweep_steps]:  # Gradio logs a bad one whole
        capped(number, MAX_NUMBER_CHARS)


def shortened(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS] + "…"


LAUNCH = {  # every launch of the page
    "css": CSS,
    "head": HEAD,
    "max_file_size": MAX_UPLOAD,
    "app_kwargs": {"middleware": [Middleware(RequestLimits)]},
}


# ---- Handlers: plain functions of the library, the inputs and the visitor's session ---------


def finite(values: Sequence[float | None], what: str = "Slider values") -> list[float]:
    numbers = [0.0 if v is None else float(v) for v in values]
    if not all(math.isfinite(v) for v in numbers):
        raise ValueError(f"{what} must be finite numbers.")
    return numbers


DETAIL_RANGE = (0.0, 1.0)  # "keep photo detail": the model's output alone … the photo's detail


def detail_value(detail: float | None) -> float | None:
    """ "Keep photo detail" as a number in DETAIL_RANGE, None staying the model's default."""
    return None if detail is None else clamp(finite([detail], "Keep photo detail")[0], DETAIL_RANGE)


def clamp(value: float, ends: tuple[float, float]) -> float:
    """`value` moved to the nearer end of `ends` if past it: a number typed past a slider's end
    is taken as that end, by the page and the API alike (`settle` tells the page's visitor)."""
    return min(max(value, ends[0]), ends[1])


class TypedSlider(gr.Slider):
    """A slider whose number box hands the app what was typed: a number past either end, or
    None for a box with no number in it ("--"). Gradio's own slider refuses such a value with
    an error the page never shows, and box, slider, picture and download then drift apart; here
    the edits clamp it (`clamp`), `settle` sets the box to the clamped number and says so, the
    page's edits wait out a box with no number (`typing`), and the page's script (HEAD) puts
    back the box's last number when the visitor leaves it."""

    is_template = True  # drawn by Gradio's own slider: the front end picks it by the base's name

    def preprocess(self, payload: float | None) -> float | None:
        return None if payload is None else float(payload)


class FaceChoice(gr.CheckboxGroup):
    """The faces to edit, by number; None (an API client leaving the list out) is every face,
    where Gradio's own checkbox group fails on it with a server error."""

    is_template = True  # drawn by Gradio's own checkbox group

    def preprocess(self, payload: list | None) -> list | None:
        return None if payload is None else super().preprocess(payload)


def typing(values: Sequence[float | None], options: dict[str, Any]) -> bool:
    """Whether a slider's number box holds no number yet (a "-" on the way to "-1"): the
    page's edits then leave the picture and the download as they are."""
    return None in values or ("detail" in options and options["detail"] is None)


def slider_keys(editor: Editor) -> list[SliderKey]:
    """The model's sliders (`fader.attributes.slider_keys`), as many as the page has."""
    keys = model_slider_keys(editor.model.config)
    if len(keys) > MAX_SLIDERS:
        raise ValueError(f"This model needs {len(keys)} sliders; the app shows {MAX_SLIDERS}.")
    return keys


def slider_values(library: ModelLibrary, model_name: str, values: Sequence[float]) -> dict:
    """The sliders' numbers as the editor takes them: a float per binary attribute, a dict of
    its values' numbers per slider group."""
    editor = library.editor(model_name)
    keys = slider_keys(editor)
    ends = editor.model.config.slider_range
    numbers = finite(values)
    if any(numbers[len(keys) :]):  # a list meant for another model, or shifted by one
        given = max(i for i, v in enumerate(numbers) if v) + 1
        raise ValueError(
            f"{model_name} takes {len(keys)} slider values ({', '.join(map(api_name, keys))}), "
            f"in that order; {given} were given. Leave the rest out (or 0), or use /edit_by_name."
        )
    by_attribute: dict[str, Any] = {}
    for (name, category), number in zip(keys, numbers, strict=False):
        value = clamp(number, ends)
        if category is None:
            by_attribute[name] = value
        else:
            by_attribute.setdefault(name, {})[category] = value
    return by_attribute


def values_by_position(editor: Editor, values: Any, start: dict) -> list[float]:
    """An object of attribute values by name (`{"eight": 1, "three": 0}`; `api_name`, any
    case) as the sliders' positional values; attributes not named stay at `start`."""
    if not isinstance(values, dict):
        raise ValueError(
            'Give the attribute values as an object by name, such as {"three": 0, "eight": 1}.'
        )
    keys = slider_keys(editor)
    # a group's value also by its own name ({"blond_hair": 1} for hair_blond_hair), as on a
    # model whose values are binary attributes of their own
    aliases = {api_name((category, None)): i for i, (_, category) in enumerate(keys) if category}
    position = aliases | {api_name(key): i for i, key in enumerate(keys)}
    by_name = {api_name((str(name), None)): value for name, value in values.items()}
    unknown = [name for name in by_name if name not in position]
    if unknown:
        raise ValueError(
            f"This model has no attribute {unknown[0][:40]!r}; its attributes are "
            f"{', '.join(position)}."
        )
    flat_start = flat_values(start)
    numbers = [flat_start[category or name] for name, category in keys]
    given = finite(list(by_name.values()), "Attribute values")
    for name, value in zip(by_name, given, strict=True):
        numbers[position[name]] = value
    return numbers


def encode(
    library: ModelLibrary, model_name: str, image: Photo, session: str = ""
) -> tuple[Any, str, str]:
    """Align (for face models) and encode the photo once; return the crop the model sees, what
    the page says about it, and the photo's id ("" when refused: the message says why)."""
    editor = library.editor(model_name)  # an unknown model is refused whatever the photo
    if image is None:
        return None, "Upload a photo to start.", ""
    if isinstance(image, RejectedPhoto):
        return None, markdown_text(image.message), ""
    if not editor.aligns_faces and shows_a_face(image):
        return (
            None,
            f"This photo shows a face, but **{model_name}** does not edit faces. "
            + (GET_A_FACE_MODEL),
            "",
        )
    try:  # the prepared photo as loaded: other uploads may evict it before a read-back
        photo_id, prepared = editor.load_prepared(image, session)
    except ValueError as error:
        return None, markdown_text(str(error)), ""
    finally:
        return_freed_memory()  # the decoded upload's pages, back to the system
    how = f"Face aligned with {prepared.face.backend}." if prepared.face else "Centre square."
    read = [
        plain_words(name) for name, value in flat_values(prepared.slider_start).items() if value
    ]
    judged = f"The classifier reads: {', '.join(read) or 'none'}." if editor.classifier else ""
    return shown(prepared.crop), " ".join(filter(None, [how, judged, prepared.note])), photo_id


def page_encode(library: ModelLibrary, model_name: str, image: Photo, session: str = "") -> tuple:
    """`encode` as the page shows it: a refused photo also clears the previous photo's edit and
    download in the same answer, where the steps after the encoding would clear them a second
    later (its download stayed beside the refusal). An accepted photo's replace them."""
    crop, note, photo_id = encode(library, model_name, image, session)
    return crop, note, photo_id, *(("", "", None) if not photo_id else (gr.skip(),) * 3)


def starting_sliders(
    library: ModelLibrary, model_name: str, photo_id: str, session: str = ""
) -> list:
    """Sliders at what the model's classifier reads from the photo (0 without one), and the
    same numbers for the page's reset buttons (`reset_targets`): "Reset all" is this handler."""
    editor = library.editor(model_name)
    start = editor.photo(photo_id, session).slider_start if photo_id else editor.neutral_start()
    values = [
        start[name] if category is None else start[name][category]
        for name, category in slider_keys(editor)
    ]
    updates = [gr.update(value=v) for v in values] + [gr.update()] * (MAX_SLIDERS - len(values))
    return [*updates, reset_targets(values, editor.model.config.default_detail)]


def reset_targets(values: Sequence[float], detail: float) -> str:
    """Where each slider's reset button (↺) goes, as the page's script reads it: the photo's
    starting values and the model's detail, by the sliders' element ids. Gradio's own reset
    goes to the value the page was built with (0), which for a photo read as a three turned
    the three into a blob."""
    targets = {f"slider-{i}": v for i, v in enumerate(values)} | {"slider-detail": detail}
    return f"<div data-targets='{json.dumps(targets)}'></div>"


def settle(library: ModelLibrary, model_name: str, *values: float | None) -> list:
    """The page's sliders (then "keep photo detail") after a change: a number typed past an end
    is set to that end, which the edits already used (`clamp`), and a note under the sliders
    says so, kept while an attribute's slider stays at an end (setting the box changes it once
    more), and emptied by the next change within the ends; the others are left as they are."""
    editor = library.editor(model_name)
    keys = slider_keys(editor)
    ends = [editor.model.config.slider_range] * len(keys) + [DETAIL_RANGE]
    labels = [slider_label(key) for key in keys] + ["Keep photo detail"]
    at_an_end = any(value in ends[0] for value in values[: len(keys)])
    updates, notes = [], []
    shown = [*values[: len(keys)], values[-1]]  # the model's sliders and "keep photo detail"
    for value, slider_ends, label in zip(shown, ends, labels, strict=True):
        target = value if value is None else clamp(value, slider_ends)
        updates.append(gr.skip() if target == value else gr.update(value=target))
        if target != value:
            low, high = slider_ends
            notes.append(
                f"*{label}* runs from {low:g} to {high:g}: {value:g} is set to {target:g}."
            )
    unused = [gr.skip()] * (MAX_SLIDERS - len(keys))
    note = " ".join(notes) if notes else (gr.skip() if at_an_end else "")
    return [*updates[:-1], *unused, updates[-1], note]


def photo_for(
    library: ModelLibrary, model_name: str, image: Photo, photo_id: str, session: str
) -> str | None:
    """A valid id for the shown photo: the cached latent, re-encoded only if it was evicted.
    None when no photo was accepted (nothing to edit, and nothing stale is edited)."""
    if isinstance(image, RejectedPhoto) or not photo_id:
        return None
    editor = library.editor(model_name)
    try:
        editor.photo(photo_id, session)
        return photo_id
    except ValueError:
        if not image:
            raise ValueError(
                f"Photo {photo_id[:40]!r} is not loaded here (never encoded in this session, or "
                "no longer loaded): send the photo with it, or encode it again; /encode answers "
                "a new photo_id."
            ) from None
        return editor.load(image, session)


def edited(
    library: ModelLibrary,
    model_name: str,
    image: Photo,
    photo_id: str,
    values: Sequence[float],
    session: str,
    full_resolution: bool,
    *,
    detail: float | None = None,
    faces: Sequence[int] | None = None,
) -> tuple[EditResult, str, dict[str, float]] | None:
    """What `edit` and `export` share: the inputs checked, the photo found, the edit made. None
    when no photo was accepted. `detail` is "keep photo detail" (None: the model's default),
    `faces` the face numbers to edit (None: all)."""
    sliders = slider_values(library, model_name, values)
    detail = detail_value(detail)
    photo_id = photo_for(library, model_name, image, photo_id, session)
    if photo_id is None:
        return None
    editor = library.editor(model_name)
    faces = faces_present(editor, photo_id, session, faces)
    result = editor.edit(
        photo_id, sliders, session, full_resolution=full_resolution, detail=detail, faces=faces
    )
    return result, photo_id, sliders


def edit(
    library: ModelLibrary,
    model_name: str,
    image: Photo,
    photo_id: str,
    *values: float,
    session: str = "",
    inline: bool = False,
    **options: Any,
) -> tuple:
    """The live path: decoder only, pasted into the preview-sized photo (`options` as `edited`
    takes them). `inline`, as the page shows a slider move: the crop and the preview as <img>s
    whose pictures travel inside the event's own message, so no file is written and the browser
    makes no second request before it can paint ("" clears them)."""
    if inline and typing(values, options):
        return gr.skip(), gr.skip(), gr.skip()
    done = edited(library, model_name, image, photo_id, values, session, False, **options)
    if done is None:
        return ("", "", "") if inline else (None, None, "")
    result, photo_id, _ = done
    if inline:
        return inline_crop(result.crop), inline_photo(result.photo), photo_id
    return shown(result.crop), result.photo, photo_id


def edit_by_name(
    library: ModelLibrary,
    model_name: str,
    image: Photo,
    photo_id: str,
    values: Any,
    session: str = "",
    **options: Any,
) -> tuple:
    """`edit` with the attribute values as an object by name (`values_by_position`): the
    attributes not named stay at the photo's start, what the classifier reads from it."""
    photo_id = photo_for(library, model_name, image, photo_id, session)
    if photo_id is None:
        raise ValueError("Send the photo, or the photo_id that /encode answered.")
    editor = library.editor(model_name)
    positional = values_by_position(editor, values, editor.photo(photo_id, session).slider_start)
    return edit(library, model_name, image, photo_id, *positional, session=session, **options)


def export(
    library: ModelLibrary,
    model_name: str,
    image: Photo,
    photo_id: str,
    *values: float,
    session: str = "",
    folder: Path | None = None,
    **options: Any,
) -> str | None:
    """The edit pasted into the full-resolution photo, as a PNG file of this request's own."""
    done = edited(library, model_name, image, photo_id, values, session, True, **options)
    if done is None:
        return None
    result, photo_id, sliders = done
    start = library.editor(model_name).photo(photo_id, session).slider_start
    folder = folder or Path(tempfile.gettempdir())
    remove_emptied_exports(folder)
    path = Path(tempfile.mkdtemp(dir=folder, prefix=EXPORT_PREFIX)) / download_name(
        model_name, sliders, start
    )
    result.photo.save(path, format="PNG", compress_level=1)  # fast: it is made on release
    return str(path)


def remove_emptied_exports(folder: Path) -> None:
    """Remove the export folders Gradio has emptied. Each export has a folder of its own (for
    its download name); Gradio deletes the file an hour on, never the folder, so a public app
    would gather one empty folder per export. Only those unchanged for a minute go: a new one
    is empty for a moment, until its file is written."""
    settled = time.time() - 60
    for entry in os.scandir(folder):
        if entry.name.startswith(EXPORT_PREFIX) and entry.stat().st_mtime < settled:
            with contextlib.suppress(OSError):  # not empty (or already gone): it stays
                os.rmdir(entry.path)


def download_name(model_name: str, sliders: dict, start: dict) -> str:
    """`fader-<model>-<attribute>=<value>….png`, in characters every file system takes: the
    values not 0 or not at the photo's `start` (a three's `three=0`), and "unchanged" only
    when every slider is at its start."""
    model = re.sub(r"[^A-Za-z0-9]+", "-", Path(model_name).name).strip("-")[:40] or "model"
    flat, begun = flat_values(sliders), flat_values(start)
    moved = {name for name, value in flat.items() if not math.isclose(value, begun.get(name, 0))}
    values = "_".join(f"{name}={value:g}" for name, value in flat.items() if value or name in moved)
    label = values if moved else "unchanged"
    return re.sub(r"[^A-Za-z0-9=._-]+", "-", f"fader-{model}-{label}")[:120] + ".png"


def sweep(
    library: ModelLibrary,
    model_name: str,
    image: Photo,
    photo_id: str,
    attribute: str,
    steps: float,
    *values: float,
    detail: float | None = None,
    faces: Sequence[int] | None = None,
    session: str = "",
) -> Image.Image:
    """One attribute from the slider minimum to maximum, other sliders as set; a row per face."""
    (steps,) = finite([steps], "The number of steps")
    sliders = slider_values(library, model_name, values)
    detail = detail_value(detail)
    photo_id = photo_for(library, model_name, image, photo_id, session)
    if photo_id is None:
        raise ValueError("Upload a photo first.")
    editor = library.editor(model_name)
    name = next((a for a in editor.attributes if plain_words(a) == attribute), attribute)
    low, high = editor.model.config.slider_range
    faces = faces_present(editor, photo_id, session, faces)
    strip = editor.sweep(photo_id, name, low, high, int(steps), sliders, session, detail, faces)
    tile = strip.width // int(steps)
    factor = max(1, -(-SHOWN_SIDE // 2 // tile))  # tiles at least half a shown crop
    strip = strip.resize((strip.width * factor, strip.height * factor), Image.Resampling.NEAREST)
    return labelled_strip(strip, np.linspace(low, high, int(steps)).tolist(), plain_words(name))


def face_labels(count: int) -> list[str]:
    return [f"Face {i + 1}{' (largest)' if i == 0 else ''}" for i in range(count)]


def face_choices(
    library: ModelLibrary, model_name: str, photo_id: str, session: str = ""
) -> tuple[Any, list[int]]:
    """The "Faces to edit" choice for the photo: every face found, all ticked; shown only when
    there is more than one. Also the ticked face numbers, which the page's edits read."""
    editor = library.editor(model_name)
    count = len(editor.photo(photo_id, session).faces) if photo_id else 0
    labels = face_labels(count)
    return gr.update(choices=labels, value=labels, visible=count > 1), list(range(count))


def picked_faces(ticked: list[int]) -> list[int]:
    """The faces the visitor ticked, kept where the page's edits read them (`Page.faces_ticked`)."""
    return ticked


def faces_present(
    editor: Editor, photo_id: str, session: str, faces: Sequence[int] | None
) -> Sequence[int] | str:
    """The ticked face numbers this photo has ("all" when none were sent, and for whole-image
    models, which have nothing to pick). The API's default ticks every label the page can show,
    more than most photos have."""
    count = len(editor.photo(photo_id, session).faces)
    if faces is None or count == 0:
        return "all"
    return [i for i in faces if i < count]


def sweep_choices(editor: Editor) -> list[str]:
    """The attributes a sweep can run along: the binary ones (a group has no single α)."""
    return [plain_words(name) for name, category in slider_keys(editor) if category is None]


def slider_settings(library: ModelLibrary, model_name: str) -> list[dict[str, Any]]:
    """Labels, ranges and visibility of the fixed slider pool for this model."""
    editor = library.editor(model_name)
    low, high = editor.model.config.slider_range
    keys = slider_keys(editor)
    return [
        {
            "visible": i < len(keys),
            "label": slider_label(keys[i]) if i < len(keys) else f"attribute {i}",
            "minimum": low,
            "maximum": high,
            "value": 0.0,
        }
        for i in range(MAX_SLIDERS)
    ]


GET_A_FACE_MODEL = (
    "For faces, choose a face model in the list above, start the app with one "
    "(`python app.py --model alice/fader-smiling-male`, a Hub repo or a folder), convert the "
    "authors' (`python -m fader.authors male --out models/male`) or train one on "
    "CelebA (`python -m train --attrs Smiling Male`)."
)
EXAMPLE_KINDS = ("digits", "faces")  # assets/examples/<kind>/: offered with the models of a kind


def example_kind(library: ModelLibrary, model_name: str) -> str:
    """Which example photos fit the model: faces for a face model, else the digits."""
    return "faces" if library.editor(model_name).aligns_faces else "digits"


def only_bundled(library: ModelLibrary) -> bool:
    """Whether the app offers nothing beyond its bundled models, with no network to fetch one:
    the page then says why there is no face model."""
    return offline() and set(library.names) <= set(bundled_models())


def what_it_edits(config: Any) -> str:
    """The kind of picture a model was trained on, in words a visitor understands."""
    if config.aligns_faces:
        return "faces (found in the photo and aligned like CelebA)"
    if "mnist" in str(config.training.get("dataset", config.training.get("layout", ""))):
        return "handwritten digits (the photo's centre square)"
    return "whole pictures like the ones it was trained on (the photo's centre square)"


def model_description(library: ModelLibrary, model_name: str) -> str:
    editor = library.editor(model_name)
    config = editor.model.config
    low, high = config.slider_range
    names = ", ".join(plain_words(a) for a in editor.attributes)
    lines = [
        f"**{model_name}** edits {what_it_edits(config)}, {config.image_size}×"
        f"{config.image_size}: {names}. Sliders run from {low:g} to {high:g}: 0 = without "
        "the attribute, 1 = with it." + ("" if config.aligns_faces else " It does not edit faces.")
    ]
    if only_bundled(library):
        lines.append(
            "No face model here: the app is offline with only its bundled models, and face "
            "models come from the Hub or the authors' site."
        )
    return "\n\n".join(lines)


def switch_model(library: ModelLibrary, model_name: str, current: str | None = None) -> list:
    """The page for another model: the list's choice, what it edits, its sweep choices and
    sliders, its examples, and a line under the list. A model that cannot load leaves the page
    on `current` and says why in that line (under the list, where the name was chosen: the
    status under the photo is the photo's), whole."""
    try:
        if model_name not in library.names:  # typed into the list
            raise ValueError(
                f"it is not one of this app's models ({', '.join(library.names)}). The app "
                f"offers the models it was started with: `python app.py --model {model_name}`."
            )
        editor = library.editor(model_name)
    except ValueError as error:
        if current is None or current == model_name:
            raise
        unchanged = [gr.update()] * (5 + MAX_SLIDERS + len(EXAMPLE_KINDS))
        message = f"Could not load **{model_name}**: {error} The page stays on **{current}**."
        return [gr.update(value=current), current, *unchanged, markdown_text(message)]
    choices = sweep_choices(editor)
    sliders = [gr.update(**settings) for settings in slider_settings(library, model_name)]
    info = model_description(library, model_name)
    help_ = gr.update(visible=not editor.aligns_faces)  # how to get a face model, folded
    webcam = gr.update(visible=editor.aligns_faces)  # the live webcam follows faces
    sweep = gr.update(choices=choices, value=choices[0] if choices else None)
    detail = gr.update(value=editor.model.config.default_detail)
    kind = example_kind(library, model_name)
    examples = [gr.update(visible=k == kind) for k in EXAMPLE_KINDS]
    return [
        gr.update(value=model_name), model_name, info, help_, sweep, *sliders, detail,
        *examples, webcam, "",
    ]  # fmt: skip


def markdown_text(message: str) -> str:
    """`message` shown as written in a Markdown box: `<urlopen error …>` is text, not a tag."""
    return message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def shows_a_face(photo: str) -> bool:
    """Whether a face can be seen in the photo (dlib's detector on a preview: offline, ~0.1 s)."""
    try:
        return bool(faces_in(preview_of(load_photo(photo)), 64, backend="dlib"))
    except ValueError:
        return False


SHOWN_SIDE = 192  # crops smaller than this are enlarged for the page, pixel for pixel
PREVIEW_QUALITY = 85  # JPEG quality of the edited photo's preview in the page
# PNGs made on every move: zlib's fastest level with its run-length strategy (Z_RLE), lossless,
# faster than the level alone on a photo's crop and about as small
FAST_PNG = {"compress_level": 1, "compress_type": 3}


def enlargement(width: int) -> int:
    """The whole factor a crop `width` pixels wide is enlarged by to be readable (1: none)."""
    return 1 if width >= SHOWN_SIDE else -(-SHOWN_SIDE // width)


def shown(image: Image.Image | None) -> Image.Image | None:
    """A small model's crop enlarged by a whole factor with nearest neighbour: readable, and
    every pixel still the model's own (no blur made up by the browser's scaling)."""
    if image is None or (factor := enlargement(image.width)) == 1:
        return image
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def data_url(image: Image.Image, format: str, **options: Any) -> str:
    """`image` encoded as a `data:` URL, to send inside an event's message."""
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"data:image/{format.lower()};base64,{data}"


def inline_crop(crop: Image.Image) -> str:
    """The edited crop as an <img> of a PNG at the model's own size (lossless, a few hundred
    bytes for the digits), enlarged by the browser as `shown` enlarges it: by a whole factor,
    without smoothing (`image-rendering: pixelated`)."""
    factor = enlargement(crop.width)
    return (
        f'<img src="{data_url(crop, "PNG", **FAST_PNG)}" alt="The edited crop" '
        f'width="{crop.width * factor}" height="{crop.height * factor}" '
        'style="image-rendering: pixelated; max-width: 100%; height: auto; object-fit: contain">'
    )


def inline_photo(photo: Image.Image) -> str:
    """The edited photo's preview (at most 768 px a side) as an <img> of a JPEG; a small photo
    (a digit) enlarged as its crop is (`inline_crop`), not shown smaller than the crop."""
    factor = enlargement(photo.width)
    pixelated = "image-rendering: pixelated; " if factor > 1 else ""  # a downscale stays smooth
    return (
        f'<img src="{data_url(photo, "JPEG", quality=PREVIEW_QUALITY)}" '
        f'alt="The edited photo (preview)" width="{photo.width * factor}" '
        f'height="{photo.height * factor}" style="{pixelated}max-width: 100%; height: auto; '
        'object-fit: contain">'
    )


def labelled_strip(strip: Image.Image, alphas: Sequence[float], attribute: str) -> Image.Image:
    """The sweep's crops (a row per face) with the α of each column written under them."""
    tile = strip.width // len(alphas)
    canvas = Image.new("RGB", (strip.width, strip.height + 24), "white")
    canvas.paste(strip, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, alpha in enumerate(alphas):
        text = f"{attribute} {alpha:.2g}" if i == 0 else f"{alpha:.2g}"
        draw.text((i * tile + 4, strip.height + 5), text, fill="black")
    return canvas


def example_photos() -> dict[str, list[Path]]:
    """Photos in assets/examples/<kind>/, by kind ("digits", "faces"); their licences are in
    assets/examples/LICENSE.md."""
    suffixes = {".png", ".jpg", ".jpeg", ".webp"}
    kinds: dict[str, list[Path]] = {}
    for path in sorted(EXAMPLES.rglob("*")):
        if path.suffix.lower() in suffixes:
            kinds.setdefault(path.parent.name, []).append(path)
    return kinds


def encode_examples(library: ModelLibrary, model_name: str) -> None:
    """Encode the example photos ahead: a click then costs one decoder pass. The encodings are
    shared with whichever session clicks (as any photo two sessions upload). An example the
    model cannot take (a digit for a face model) says so when clicked."""
    editor = library.editor(model_name)
    for path in [p for paths in example_photos().values() for p in paths]:
        try:
            editor.load(path, session="examples")
        except ValueError:
            continue


# ---- Live webcam: the camera stream edited as it plays -------------------------------------

LIVE_EVERY = 0.05  # seconds between frames the browser sends (it skips one while a frame is out)
LIVE_SECONDS = 600  # a stream ends after this long; the viewer starts it again with a click
LIVE_QUALITY = 85  # JPEG quality of the frames sent back
LIVE_FRAMES = QUEUE_CONCURRENCY  # frames edited at once, whatever the number of streams
LIVE_PATIENCE = 1.0  # seconds a frame waits for a turn before it is dropped (the next is fresher)
LIVE_IDLE = 5.0  # seconds without a frame after which a stream is ended


class LiveFrames:
    """The live webcam's streams share `turns` frame edits in arrival order (each stream has
    one frame out at a time, so turns go round the streams); a frame that waits `patience`
    seconds is dropped. Streams hold no Gradio slot (`concurrency_limit=None`): a stream whose
    client stops sending frames (disconnected, or never closed) is ended after `idle` seconds,
    as is a session's older stream when it starts another; Gradio itself ends one only when
    its tab closes or its time limit is up."""

    def __init__(
        self,
        streams: Streams,
        turns: int = LIVE_FRAMES,
        patience: float = LIVE_PATIENCE,
        idle: float = LIVE_IDLE,
    ):
        self.streams, self.patience, self.idle = streams, patience, idle
        self.turns = asyncio.Semaphore(turns)
        self.last_frame: dict[str, float] = {}  # by session
        self.reaper: asyncio.Task | None = None

    def limit(self, handler: Callable) -> Callable:
        """`handler` (a `for_session` handler) run with a turn, or its frame dropped."""

        @wraps(handler)  # Gradio reads the wrapped signature: it still passes the `gr.Request`
        async def call(request: gr.Request, *args: Any) -> Any:
            session = request.session_hash or ""
            self.last_frame[session] = math.inf  # a frame in hand: the stream is not idle
            if self.reaper is None or self.reaper.done():
                queue = request.request.app.get_blocks()._queue
                self.reaper = asyncio.create_task(self.end_stopped(queue))
            try:
                await asyncio.wait_for(self.turns.acquire(), self.patience)
            except TimeoutError:
                return gr.skip(), gr.skip()
            else:
                try:
                    return await asyncio.to_thread(handler, request, *args)
                finally:
                    self.turns.release()
            finally:
                self.last_frame[session] = time.monotonic()

        return call

    async def end_stopped(self, queue: Any) -> None:
        """While streams run: end those stopped, as `/gradio_api/stream/<id>/close` would."""
        while live := [
            event
            for event in list(queue.event_ids_to_events.values())
            if event.fn.api_name == "live_frame" and not event.closed
        ]:
            now = time.monotonic()
            newest = {e.session_hash: e for e in sorted(live, key=lambda e: e.enqueue_time)}
            for event in live:
                last = self.last_frame.get(event.session_hash, event.enqueue_time)
                if now - last > self.idle or not event.alive or newest[event.session_hash] != event:
                    event.run_time, event.closed = math.inf, True
                    event.signal.set()
            for session in [s for s, t in self.last_frame.items() if now - t > self.idle]:
                del self.last_frame[session]
                self.streams.close(session)
            await asyncio.sleep(self.idle / 5)


def live_frame(
    library: ModelLibrary,
    model_name: str,
    frame: np.ndarray | RejectedPhoto | None,
    *values: float,
    detail: float | None = None,
    session: str = "",
    streams: Streams,
) -> tuple[str, str]:
    """One camera frame edited with the sliders and "keep photo detail" (None: the model's
    default), the largest face tracked from the session's previous frame; returned as an <img>
    (a data: URL, so no file is written per frame) and a note (a refused frame's: why)."""
    if frame is None:
        return "", ""
    if isinstance(frame, RejectedPhoto):
        return "", markdown_text(frame.message)
    editor = library.editor(model_name)
    sliders = slider_values(library, model_name, values)
    strength = editor.detail_strength(detail_value(detail))
    result = streams.edit(
        session,
        model_name,
        lambda: FaceStream(editor.model, editor.aligner),
        frame,
        sliders,
        strength,
    )
    return live_image(result.image, result.edited), result.note


def live_image(frame: np.ndarray, edited: bool) -> str:
    """`frame` as an <img> of a JPEG data: URL; `data-edited` says whether a face was edited."""
    return (
        f'<img src="{data_url(Image.fromarray(frame), "JPEG", quality=LIVE_QUALITY)}" '
        f'data-edited="{int(edited)}" '
        'alt="The camera, edited" style="width: 100%">'
    )


def live_stop(library: ModelLibrary, *, session: str = "", streams: Streams) -> str:
    """The stream ended (stopped, or its time was up): free what the session's stream held."""
    streams.close(session)
    return "Camera stopped."


# ---- The page: layout, then wiring -----------------------------------------------------------


def for_session(
    handler: Callable, library: ModelLibrary, controls: Sequence[str] = (), **fixed: Any
) -> Callable:
    """`handler` bound to the library, with the visitor's Gradio session passed in, so a photo
    is only ever reached from the browser tab (or API client) that uploaded it. The event's
    last inputs fill the handler's keyword parameters named in `controls` (those after the
    sliders, such as `detail`)."""

    def call(request: gr.Request, *args: Any) -> Any:  # Gradio fills a first `gr.Request`
        split = len(args) - len(controls)
        named = dict(zip(controls, args[split:], strict=True))
        session = request.session_hash or ""
        return handler(library, *args[:split], session=session, **named, **fixed)

    call.__name__ = handler.__name__
    return user_errors(call)


def pictures_as_files(handler: Callable, outputs: Sequence[gr.Image], folder: Path) -> Callable:
    """`handler` whose pictures (for image `outputs`) are answered as files of the request's
    own, in `folder` inside Gradio's cache (served from there, never copied). Gradio writes a
    returned picture in place at a path named by its content: two visitors getting the same
    picture at once (one example photo, the same sliders) rewrote that file while the first was
    fetching it, and the first download broke ("received 0 bytes")."""
    formats = [getattr(output, "format", None) for output in outputs]

    @wraps(handler)
    def call(*args: Any, **kwargs: Any) -> Any:
        answer = handler(*args, **kwargs)
        values = [answer] if len(outputs) == 1 else list(answer)
        for index, (value, image_format) in enumerate(zip(values, formats, strict=True)):
            if isinstance(value, Image.Image):  # a name of its own, no folder left behind
                handle, values[index] = tempfile.mkstemp(f".{image_format}", "picture-", folder)
                with os.fdopen(handle, "wb") as file:
                    options = FAST_PNG if image_format == "png" else {}
                    value.save(file, format=image_format, **options)
        return values[0] if len(outputs) == 1 else tuple(values)

    return call


def limited(handler: Callable, turns: asyncio.Semaphore, wait: float = 0.0) -> Callable:
    """`handler` run only with one of `turns` (shared by the events it is given to), as the
    queue's `concurrency_limit` would run it, for events outside the queue too (`queue=False`:
    one POST, no join and no event stream): the others wait their turn on the event loop,
    holding no thread. `wait` seconds pass first, holding nothing."""

    @wraps(handler)  # Gradio reads the wrapped signature: it still passes the `gr.Request`
    async def call(*args: Any) -> Any:
        await asyncio.sleep(wait)
        async with turns:
            return await asyncio.to_thread(handler, *args)

    return call


def export_move(
    library: ModelLibrary,
    model_name: str,
    image: Photo,
    photo_id: str,
    *values: float,
    session: str = "",
    **options: Any,
) -> Any:
    """`export` (the same `options`) for slider moves, answered EXPORT_WAIT late: for a photo
    the session no longer shows (another was uploaded meanwhile) it leaves the download alone,
    as it does when there is no photo (a refused photo's download is cleared by the upload's
    own export), and while a slider's box holds no number (`typing`)."""
    if typing(values, options):
        return gr.skip()
    if photo_id and library.editor(model_name).photos.latest(session) != photo_id:
        return gr.skip()
    path = page_export(library, model_name, image, photo_id, *values, session=session, **options)
    return gr.skip() if path is None else path


class PageExports:
    """Each session's last export from the page, by the inputs it was made of. An upload (and
    "Reset all") asks for one export twice: at the end of its chain, and as the sliders are
    set to the photo's start, whose `change` a move's download follows; the second is answered
    with the first's file, waiting for it if it is still being made."""

    def __init__(self, sessions: int = 1024, locks: int = 64):
        self.sessions = sessions
        self.last: OrderedDict[str, tuple[tuple, str]] = OrderedDict()  # session → (inputs, path)
        self.locks = [threading.Lock() for _ in range(locks)]  # a session's exports in turn

    def made(self, session: str, inputs: tuple, make: Callable[[], str | None]) -> str | None:
        with self.locks[hash(session) % len(self.locks)]:
            known, path = self.last.get(session, ((), ""))
            if known == inputs and os.path.isfile(path):
                return path
            path = make()
            if path is not None:
                self.last[session] = inputs, path
                self.last.move_to_end(session)
                while len(self.last) > self.sessions:
                    self.last.popitem(last=False)
            return path


def page_export(
    library: ModelLibrary,
    model_name: str,
    image: Photo,
    photo_id: str,
    *values: float,
    session: str = "",
    exports: PageExports,
    **options: Any,
) -> str | None:
    """`export` (the same `options`) as the page asks for it: once per set of inputs."""
    faces = options.get("faces")
    inputs = (model_name, photo_id, values, options.get("detail"), faces and tuple(faces))
    return exports.made(
        session,
        inputs,
        lambda: export(library, model_name, image, photo_id, *values, session=session, **options),
    )


@dataclass
class LiveWebcam:
    camera: gr.Image  # streaming input: frames as the browser captures them
    edited: gr.HTML  # the edited frame as an <img>, no file per frame
    note: gr.Markdown
    section: gr.Accordion  # shown with face models only: the stream follows a face


@dataclass
class Page:
    model_name: gr.Dropdown
    current_model: gr.State  # the model the page shows: where a failed switch goes back to
    model_loading: gr.Markdown  # a model's download shows its progress here
    model_info: gr.Markdown
    face_help: gr.Accordion  # how to get a face model, folded; shown with other models
    image: gr.Image
    examples: list[gr.Column]  # example photos by kind (EXAMPLE_KINDS), the model's shown
    status: gr.Markdown
    crop: gr.Image
    photo_id: gr.Textbox
    sliders: list[gr.Slider]
    slider_note: gr.Markdown
    reset_all: gr.Button
    reset_targets: gr.HTML  # where each slider's ↺ goes (`reset_targets`), hidden
    detail: gr.Slider
    faces: gr.CheckboxGroup
    faces_ticked: gr.State  # the ticked face numbers (None: all), as the page's edits read them
    edited_crop: gr.HTML  # the live edit, its pictures inline (`edit(inline=True)`)
    edited_photo: gr.HTML
    edit_files: list[gr.Image]  # never shown: the `/edit` API's crop and preview, as files
    values: gr.JSON  # never shown: `/edit_by_name`'s attribute values by name
    download: gr.File
    sweep_attribute: gr.Dropdown
    sweep_steps: gr.Slider
    sweep_button: gr.Button
    sweep_strip: gr.Image
    webcam: LiveWebcam | None = None


def live_webcam_layout(faces: bool) -> LiveWebcam:
    """The live webcam, shown when the first model edits `faces` (`switch_model` shows it per
    model): its frames are edited face by face, nothing else."""
    with gr.Accordion("Live webcam", open=False, visible=faces, elem_id="live-webcam") as section:
        gr.Markdown(
            "Start the camera: each frame is edited with the sliders above as it plays, the "
            "face followed from frame to frame. Frames without a face are shown as they are."
        )
        with gr.Row():
            camera = frame_input(
                sources=["webcam"], streaming=True, label="Camera", elem_id="live-camera"
            )
            edited = gr.HTML(label="Edited live", elem_id="live-edited")
        note = gr.Markdown(elem_id="live-note")
    return LiveWebcam(camera, edited, note, section)


def wire_live_webcam(page: Page, library: ModelLibrary, streams: Streams) -> None:
    """Each frame edited as it arrives, streams sharing the turns (`LiveFrames`). When the
    stream ends (stop, time up, no frame for `LIVE_IDLE`) or the camera is cleared, the
    session's stream is freed."""
    webcam = page.webcam
    assert webcam is not None
    live = LiveFrames(streams)
    frame = live.limit(for_session(live_frame, library, ("detail",), streams=streams))
    stop = for_session(live_stop, library, streams=streams)
    webcam.camera.stream(
        frame,
        [page.model_name, webcam.camera, *page.sliders, page.detail],
        [webcam.edited, webcam.note],
        stream_every=LIVE_EVERY,
        time_limit=LIVE_SECONDS,
        concurrency_limit=None,  # `LiveFrames` shares the turns and ends stopped streams
        show_progress="hidden",
        api_name="live_frame",
    ).then(stop, None, webcam.note, api_visibility="private", show_progress="hidden")
    webcam.camera.clear(stop, None, webcam.note, api_visibility="private", show_progress="hidden")


# ---- The API as scripts and MCP clients read it: names, descriptions, examples ---------------

PHOTO_ARGS = """    model_name: the model to edit with, one of the app's (its page lists them)
    photo: the photo (a file, URL or data: URL); may be left out when photo_id is given"""
EDIT_ARGS = (
    PHOTO_ARGS
    + """
    photo_id: the id /encode answered for this photo, in this client's session"""
)
CONTROL_ARGS = """    detail: keep photo detail: 0 the model's output alone, 1 the photo's detail
    faces: the faces to edit by label ("Face 1 (largest)", "Face 2"…); left out: every face"""
API_DOCS = {  # Google style, as Gradio reads it for the API page and MCP: an argument a line
    "encode": """Encode a photo once, so that its edits are fast: a face model finds and aligns
the face, other models take the centre square. Answers the crop the model sees, a note (what
was found, what the classifier reads) and the photo_id that the edits take.

Args:
{photo}""",
    "edit": """Edit an encoded photo with each slider's value, in the model's order of
attributes. Answers the edited crop, the edited photo (a preview, at most 768 pixels a side;
/export makes the full-resolution PNG) and the photo_id. A value past a slider's end is taken
as that end.

Args:
{edit}
{sliders}
{controls}""",
    "export": """The edit /edit makes, as a full-resolution PNG file named for its values.

Args:
{edit}
{sliders}
{controls}""",
    "edit_by_name": """Edit an encoded photo with attribute values by name, such as
{{"three": 0, "eight": 1}}: attributes not named stay at the photo's start (what the model's
classifier reads from it). Answers as /edit does.

Args:
{edit}
    values: attribute values by name ({names}): 0 without the attribute, 1 with it
{controls}""",
    "sweep": """One attribute from the slider's minimum to its maximum in a number of steps,
the other sliders as given: a strip of crops, a row per face, each column labelled.

Args:
{edit}
    attribute: the attribute to sweep ("Three", "Smiling"), a binary one
    steps: how many values, 2 to 16
{sliders}
{controls}""",
}


def slider_args(library: ModelLibrary) -> tuple[list[str], str]:
    """The sliders' parameter names and their "Args:" lines: named for the first model's
    attributes (each model takes its own, in its own order; the rest serve larger models)."""
    editor = library.editor(library.names[0])
    keys = slider_keys(editor)
    low, high = editor.model.config.slider_range
    names = [api_name(key) for key in keys] + [f"slider_{i}" for i in range(len(keys), MAX_SLIDERS)]
    lines = [
        f"    {name}: {slider_label(key)}, {low:g} to {high:g}: 0 without it, 1 with it"
        for name, key in zip(names, keys, strict=False)
    ]
    lines += [f"    {name}: unused by {library.names[0]} (0)" for name in names[len(keys) :]]
    return names, "\n".join(lines)


def api_docs(library: ModelLibrary) -> dict[str, tuple[list[str], str]]:
    """Each public endpoint's parameter names and description."""
    sliders, lines = slider_args(library)
    edit = ["model_name", "photo", "photo_id"]
    names = {
        "encode": ["model_name", "photo"],
        "edit": [*edit, *sliders, "detail", "faces"],
        "export": [*edit, *sliders, "detail", "faces"],
        "edit_by_name": [*edit, "values", "detail", "faces"],
        "sweep": [*edit, "attribute", "steps", *sliders, "detail", "faces"],
    }
    attributes = [api_name(key) for key in slider_keys(library.editor(library.names[0]))]
    fill = {"photo": PHOTO_ARGS, "edit": EDIT_ARGS, "sliders": lines, "controls": CONTROL_ARGS}
    fill["names"] = ", ".join([*attributes[:3], "…"])
    return {name: (names[name], doc.format(**fill)) for name, doc in API_DOCS.items()}


def documented(handler: Callable, names: Sequence[str], doc: str) -> Callable:
    """`handler` (bound by `for_session`) as the API page and MCP clients describe it: its
    inputs called `names` (not param_0…) and `doc`, whose "Args:" describes each."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    request = inspect.Parameter("request", kind, annotation=gr.Request)
    # Every input may be left out: the photo when its id is given, the others have defaults.
    parameters = [request, *(inspect.Parameter(name, kind, default=None) for name in names)]
    handler.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    handler.__doc__ = doc
    return handler


def api_examples(page: Page, library: ModelLibrary) -> None:
    """Examples the API page shows that work offline: an example photo of the first model's
    kind (a path on the server's disk), attribute values by its names."""
    editor = library.editor(library.names[0])
    kinds = example_photos()
    photos = kinds.get("faces" if editor.aligns_faces else "digits") or [EXAMPLES / "photo.png"]
    page.image.example_payload = lambda: handle_file(str(photos[0]))
    page.image.example_value = lambda: str(photos[0])
    page.photo_id.example_payload = page.photo_id.example_value = lambda: "the id /encode answered"
    values = {api_name(key): float(i) for i, key in enumerate(slider_keys(editor)[:2])}
    page.values.example_payload = page.values.example_value = lambda: values
    page.values.api_info = lambda: {
        "type": "object",
        "additionalProperties": {"type": "number"},
        "description": "attribute values by name",
    }


def layout(library: ModelLibrary) -> Page:
    first = library.editor(library.names[0])
    gr.Markdown(
        "# Fader\nUpload a photo, then slide attributes. "
        "[Fader Networks](https://arxiv.org/abs/1706.00409), Lample et al., NeurIPS 2017."
    )
    with gr.Row():
        choices = [(choice_label(name), name) for name in library.names]
        with gr.Column(scale=1):
            model_name = gr.Dropdown(
                choices, value=library.names[0], label="Model", allow_custom_value=True
            )
            # Where a model's download shows its progress: under the list, not over any text.
            model_loading = gr.Markdown("", elem_id="model-loading")
        current_model = gr.State(library.names[0])
        with gr.Column(scale=2):
            model_info = gr.Markdown(elem_id="model-info")
            with gr.Accordion(
                "How to get a face model", open=False, visible=False, elem_id="face-help"
            ) as face_help:
                gr.Markdown(GET_A_FACE_MODEL)
    with gr.Row(elem_id="workspace"):
        with gr.Column(elem_id="photo-column"):
            sources = ["upload", "webcam", "clipboard"]
            image = photo_input(label="Photo", sources=sources, height=320, elem_id="photo")
            status = gr.Markdown("Upload a photo to start.", elem_id="status")  # in view
            # A click sets the photo; its change event finds the latent `encode_examples` cached.
            # Under the photo box, so that both are on the first screen; those of the model's kind.
            kind = example_kind(library, library.names[0])
            examples = []
            for each in EXAMPLE_KINDS:
                with gr.Column(visible=each == kind, elem_id=f"examples-{each}") as column:
                    paths = example_photos().get(each, [])
                    gr.Examples([[str(p)] for p in paths], inputs=[image], label=f"Example {each}")
                examples.append(column)
            download = gr.File(label="Full-resolution PNG", interactive=False, elem_id="download")
            crop = gr.Image(
                label="What the model sees", format="png", interactive=False, height=200
            )
            photo_id = gr.Textbox(visible=False, label="photo_id")
        with gr.Column(elem_id="slider-column"):
            # Built for the first model (the API page describes them so), then set per model.
            sliders = [
                TypedSlider(
                    **settings, step=0.05, elem_id=f"slider-{i}", elem_classes=["attribute-slider"]
                )
                for i, settings in enumerate(slider_settings(library, library.names[0]))
            ]
            slider_note = gr.Markdown(elem_id="slider-note")  # a typed value set to an end
            reset_all = gr.Button("Reset all", size="sm", elem_id="reset-all")
            targets = gr.HTML(reset_targets([], 0.0), elem_id="reset-targets")  # read by HEAD
            detail = TypedSlider(
                *DETAIL_RANGE,
                value=0.0,
                step=0.05,
                label="Keep photo detail",
                info="0: the model's output alone; 1: the photo's own detail kept (lower it "
                "for strong edits, where the old shape shows through)",
                elem_id="slider-detail",
            )
            labels = face_labels(MAX_FACES)  # the API's choices; the page shows the photo's
            faces = FaceChoice(
                labels, value=labels, type="index", label="Faces to edit", visible=False
            )
            # What the page's edits read instead of the checkboxes: a move sent while a new
            # photo's faces are listed would carry the old photo's ticks, which Gradio refuses
            # against the new choices (an error on the page); `faces_present` drops the faces a
            # photo does not have.
            faces_ticked = gr.State(None)
        with gr.Column(elem_id="result-column"):
            edited_crop = gr.HTML(
                label="Edited crop", show_label=True, container=True, elem_id="edited-crop"
            )
            edited_photo = gr.HTML(
                label="Edited photo (preview)",
                show_label=True,
                container=True,
                elem_id="edited-photo",
            )
            edit_files = [
                gr.Image(format="png", interactive=False, visible=False, label="edited_crop"),
                gr.Image(format="jpeg", interactive=False, visible=False, label="edited_photo"),
            ]
            values = gr.JSON(visible=False, label="values")  # /edit_by_name's object by name
    with gr.Accordion("Sweep one attribute", open=False):
        with gr.Row():
            names = sweep_choices(first)
            sweep_attribute = gr.Dropdown(
                names, value=names[0] if names else None, label="Attribute", allow_custom_value=True
            )
            sweep_steps = gr.Slider(2, 16, value=7, step=1, label="Steps")
            sweep_button = gr.Button("Sweep")
        sweep_strip = gr.Image(label="Sweep", format="png", interactive=False)
    webcam = live_webcam_layout(first.aligns_faces)
    return Page(
        model_name, current_model, model_loading, model_info, face_help, image, examples, status,
        crop, photo_id, sliders, slider_note, reset_all, targets, detail, faces, faces_ticked,
        edited_crop, edited_photo, edit_files, values, download, sweep_attribute, sweep_steps,
        sweep_button, sweep_strip, webcam=webcam,
    )  # fmt: skip


def model_page(page: Page) -> list:
    """What `switch_model` updates."""
    return [
        page.model_name, page.current_model, page.model_info, page.face_help,
        page.sweep_attribute, *page.sliders, page.detail, *page.examples, page.webcam.section,
        page.model_loading,
    ]  # fmt: skip


def wire(
    page: Page, library: ModelLibrary, live_edits: int, streams: Streams | None = None
) -> None:
    # Every file answered to a visitor (exports, the API's pictures) is the request's own, in
    # the app's own folder of Gradio's cache: deleted as the cache is.
    files = Path(page.download.GRADIO_CACHE) / "fader-files"
    exports = files / "exports"  # apart from the pictures, so clearing them reads few entries
    exports.mkdir(parents=True, exist_ok=True)
    controls = ("detail", "faces")  # the inputs after the sliders, by their keyword names
    once = {"exports": PageExports()}  # the page's exports: one per set of inputs
    encoded = [page.crop, page.status, page.photo_id]
    # The page's own: a refusal also clears the last photo's edit and download, at once.
    page_encoded = [*encoded, page.edited_crop, page.edited_photo, page.download]
    api_outputs = [*page.edit_files, page.photo_id]  # the API's edit: the crop and the preview

    def with_files(handler: Callable, outputs: Sequence[gr.Image]) -> Callable:
        return pictures_as_files(handler, outputs, files)

    bound = {
        "encode": for_session(with_files(encode, encoded), library),
        "page_encode": for_session(with_files(page_encode, page_encoded), library),
        "starting_sliders": for_session(starting_sliders, library),
        "face_choices": for_session(face_choices, library),
        "edit": for_session(with_files(edit, api_outputs), library, controls),
        "edit_by_name": for_session(with_files(edit_by_name, api_outputs), library, controls),
        "live_edit": for_session(edit, library, controls, inline=True),
        "sweep": for_session(with_files(sweep, [page.sweep_strip]), library, controls),
        "export": for_session(export, library, controls, folder=exports),
        "page_export": for_session(page_export, library, controls, folder=exports, **once),
        "export_move": for_session(export_move, library, controls, folder=exports, **once),
    }
    for name, (names, doc) in api_docs(library).items():  # named and described for clients
        documented(bound[name], names, doc)

    def switch(model_name: str, current: str, progress=TRACK_DOWNLOADS) -> list:
        """Downloads and conversions show their progress (tqdm) in the page."""
        return switch_model(library, model_name, current)

    switch = user_errors(switch)
    controls_in = [page.detail, page.faces]
    edit_inputs = [page.model_name, page.image, page.photo_id, *page.sliders, *controls_in]
    # The page's own edits read the ticked faces from the session (see `layout`).
    page_inputs = [*edit_inputs[:-1], page.faces_ticked]
    edit_outputs = [page.edited_crop, page.edited_photo, page.photo_id]  # what the page shows
    hidden = {"api_visibility": "private"}
    live = {"trigger_mode": "always_last", "show_progress": "hidden"}

    def then_show_edit(event: Any) -> None:
        """After a photo is encoded: sliders to their start, the faces found, the edit, its
        download (or, for a refused photo, every output cleared)."""
        photo = [page.model_name, page.photo_id]
        faces = [page.faces, page.faces_ticked]
        starts = [*page.sliders, page.reset_targets]
        event.then(bound["starting_sliders"], photo, starts, **hidden).then(
            bound["face_choices"], photo, faces, **hidden
        ).then(bound["live_edit"], page_inputs, edit_outputs, **hidden).then(
            bound["page_export"], page_inputs, page.download, **hidden
        )

    # A drag fires input (live) and release, keys and typing input and change, the reset button
    # input and change (HEAD's script types the photo's start into the box), a value the server
    # sets change: the edit follows input and release, the download release and change.
    moved = [*page.sliders, page.detail]
    slider_moves = [s.input for s in moved] + [s.release for s in moved]
    # A number typed past a slider's end: the box set to the end, and a word under the sliders.
    gr.on(
        [s.change for s in moved],
        user_errors(lambda model_name, *values: settle(library, model_name, *values)),
        [page.model_name, *moved],
        [*moved, page.slider_note],
        api_name="settle",
        queue=False,
        **live,
        **hidden,
    )
    # Outside the queue: a move is one POST answered with the edit (the queue's join request
    # and event stream cost more than the decoder). The page's moves and the API's edits share
    # `live_edits` turns: the decodes of those in flight are batched together.
    edits = asyncio.Semaphore(live_edits)
    moving = limited(bound["live_edit"], edits)
    page_edit = {"api_name": "live_edit", "queue": False, **live, **hidden}
    gr.on(slider_moves, moving, page_inputs, edit_outputs, **page_edit)
    # The API's edit returns files (the crop and the preview) to its clients, through the queue;
    # nothing in the page triggers it.
    api = {"concurrency_limit": None}  # waiting for a turn holds no thread
    gr.on([], limited(bound["edit"], edits), edit_inputs, api_outputs, api_name="edit", **api)
    by_name = [*edit_inputs[:3], page.values, *controls_in]  # the values as an object by name
    gr.on(
        [], limited(bound["edit_by_name"], edits), by_name, api_outputs, api_name="edit_by_name",
        **api,
    )  # fmt: skip
    # The download follows outside the queue too, EXPORT_WAIT after its trigger (a drag fires
    # `change` as it goes): exported alongside, a live edit took ~2x as long to paint on 2 cores
    # (bench/browser_latency.py); the download is not what the eye follows. The last trigger's
    # values are still the ones exported (always_last).
    releases = [s.release for s in moved] + [s.change for s in moved]
    exporting = limited(
        bound["export_move"], asyncio.Semaphore(QUEUE_CONCURRENCY), wait=EXPORT_WAIT
    )
    export_options = {"api_name": "export_move", "queue": False, **live, **hidden}
    gr.on(releases, exporting, page_inputs, page.download, **export_options)
    # Ticking a face: kept for the page's edits first, then the edit and its download.
    picked = page.faces.input(
        picked_faces, page.faces, page.faces_ticked, api_name="pick_faces", queue=False, **hidden
    )
    picked.then(
        moving, page_inputs, edit_outputs, api_name="live_edit_faces", queue=False, **hidden
    ).then(bound["page_export"], page_inputs, page.download, api_name="export_faces", **hidden)
    gr.on([], bound["export"], edit_inputs, page.download, api_name="export")  # API: at once
    reset = page.reset_all.click(
        bound["starting_sliders"],
        [page.model_name, page.photo_id],
        [*page.sliders, page.reset_targets],
        api_name="reset_all",
        queue=False,
        **hidden,
    )
    reset.then(moving, page_inputs, edit_outputs, queue=False, **hidden).then(
        bound["page_export"], page_inputs, page.download, **hidden
    )
    gr.on([], bound["encode"], [page.model_name, page.image], encoded, api_name="encode")
    # `change` alone: an upload fires `input` and `change`, and both encoded and exported the
    # photo twice (tests/test_work_per_event_browser.py); an example click fires only `change`.
    uploaded = gr.on(
        [page.image.change],
        bound["page_encode"],
        [page.model_name, page.image],
        page_encoded,
        api_name="page_encode",
        trigger_mode="always_last",
        **hidden,
    )
    then_show_edit(uploaded)
    sweep_inputs = [page.model_name, page.image, page.photo_id, page.sweep_attribute]
    page.sweep_button.click(
        bound["sweep"],
        [*sweep_inputs, page.sweep_steps, *page.sliders, *controls_in],
        page.sweep_strip,
        api_name="sweep",
    )
    switched = page.model_name.input(
        switch,
        [page.model_name, page.current_model],
        model_page(page),
        api_name="switch_model",
        show_progress_on=page.model_loading,  # a download's bar in one place, not on every slider
    )
    inputs = [page.model_name, page.image]
    then_show_edit(switched.then(bound["page_encode"], inputs, page_encoded, **hidden))
    wire_live_webcam(page, library, Streams() if streams is None else streams)


def build_demo(
    library: ModelLibrary,
    live_edits: int = LIVE_EDITS,
    streams: Streams | None = None,
    cache_lifetime: int = CACHE_LIFETIME,
) -> gr.Blocks:
    """The page for `library`'s models. `live_edits` slider moves are handled at once (their
    decodes batched); 1 handles them one at a time, the baseline `bench/app_load.py` measures.
    `streams` holds the live webcam's per-session trackers (a fresh one by default); uploads
    and answers are deleted `cache_lifetime` seconds on."""
    encode_examples(library, library.names[0])  # and a model that cannot load fails here
    with gr.Blocks(
        title="Fader: edit photos by sliding attributes",
        delete_cache=(cache_lifetime, cache_lifetime),
    ) as demo:
        page = layout(library)
        api_examples(page, library)
        bound_text_inputs(page)
        wire(page, library, live_edits, streams)
        demo.load(
            user_errors(lambda model_name: switch_model(library, model_name)),
            page.model_name,
            model_page(page),
            api_visibility="private",
        )
    return demo.queue(default_concurrency_limit=QUEUE_CONCURRENCY)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Edit photos by sliding attributes (Fader Networks)."
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        help="a bundled model name, 'authors: eyeglasses' (the authors' CelebA models, downloaded "
        "and converted on first use), a local model folder or a Hugging Face repo id (repeatable; "
        "the first is shown first). The bundled models are always offered.",
    )
    parser.add_argument("--aligner", default="auto", choices=["auto", "dlib", "face_alignment"])
    parser.add_argument(
        "--host",
        help="address to serve on (default: $GRADIO_SERVER_NAME, as a Space sets it, else "
        "127.0.0.1; 0.0.0.0 for every interface)",
    )
    parser.add_argument(
        "--port", type=int, help="port (default: $GRADIO_SERVER_PORT, else 7860 or the next free)"
    )
    parser.add_argument(
        "--share", action="store_true", help="also serve on a public gradio.live link"
    )
    parser.add_argument(
        "--mcp",
        action="store_true",
        help="also serve the API as an MCP server at /gradio_api/mcp/, for assistants: encode a "
        "photo, edit it by attribute values, sweep an attribute (needs gradio[mcp])",
    )
    parser.add_argument(
        "--live-edits",
        type=int,
        default=LIVE_EDITS,
        help=f"slider moves handled at once, their decodes batched (default {LIVE_EDITS}; "
        "1 handles one move at a time)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=max(1, (os.cpu_count() or 2) // 2),
        help="PyTorch threads per request (default: half the cores, so concurrent users and the "
        "web server are not starved; on 2 busy cores, 2 threads made decodes 10x slower)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO)
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    for name, value in GRADIO_SETTINGS.items():  # read as the queue is made, in build_demo
        os.environ.setdefault(name, value)
    try:
        # The user's models first; else a face model when one can be had (the authors', once
        # converted or downloadable), else the bundled one, so a visitor meets a face model.
        names = args.model + authors_choices() + list(bundled_models())
        library = ModelLibrary(names, args.aligner)
        if args.live_edits < 1:
            raise ValueError("--live-edits must be at least 1.")
        demo = build_demo(library, args.live_edits)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # Only what the user gave: Gradio reads GRADIO_SERVER_NAME/PORT itself (a Space sets them),
    # and an explicit value would override them.
    demo.launch(
        server_name=args.host, server_port=args.port, share=args.share, mcp_server=args.mcp,
        **LAUNCH,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
