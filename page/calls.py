"""How the page calls a handler: with the visitor's session, errors as messages, pictures as
files of the request's own, and turns shared between events.

The handlers (`page.photos`, `page.edits`, …) are plain functions of the model library, their
inputs and a session; `app.py` binds each to an event through these.
"""

import asyncio
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from functools import wraps
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from fader.library import ModelLibrary
from fader.web_pictures import FAST_PNG

MAX_MESSAGE_CHARS = 1000  # of an error message: never a visitor's input echoed whole
log = logging.getLogger("fader.app")


def user_errors(handler: Callable) -> Callable:
    """Show what went wrong as a message; never a traceback, never a dead server. The server's
    log gets the traceback of an unexpected error only, once: a visitor's refused input is no
    fault of the server's (Gradio's queue prints the traceback of every `gr.Error` unless told
    not to)."""

    @wraps(handler)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except ValueError as error:
            raise gr.Error(shortened(str(error)), print_exception=False) from None
        except Exception:
            log.exception("Unexpected error in %s", handler.__name__)
            ours = "Something went wrong on our side; please try another photo."
            raise gr.Error(ours, print_exception=False) from None

    return guarded


def shortened(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS] + "…"


def markdown_text(message: str) -> str:
    """`message` shown as written in a Markdown box: `<urlopen error …>` is text, not a tag."""
    return message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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
