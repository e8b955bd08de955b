"""Every request to a public app bounded before its web framework reads it.

An ASGI middleware (Starlette's kind, as Gradio's server takes it in `app_kwargs`): a body over
its route's limit is refused with 413 from its `content-length`, or as soon as the bytes counted
pass the limit, so no route parses more than a photo's worth (`fader.photo.MAX_BYTES`). It
knows nothing of the page; the app puts it in front of Gradio.
"""

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from fader.photo import MAX_BYTES

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
