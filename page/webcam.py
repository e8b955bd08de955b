"""The live webcam: the camera stream edited as it plays, the face followed from frame to
frame (`fader.stream`), its layout and wiring, and the turns its streams share.
"""

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import wraps
from typing import Any

import gradio as gr
import numpy as np

from fader.library import ModelLibrary
from fader.stream import FaceStream, Streams
from fader.web_pictures import inline_frame
from page.calls import for_session, markdown_text
from page.inputs import RejectedPhoto, frame_input
from page.sliders import detail_value, slider_values

LIVE_EVERY = 0.05  # seconds between frames the browser sends (it skips one while a frame is out)
LIVE_SECONDS = 600  # a stream ends after this long; the viewer starts it again with a click
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
        turns: int,
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
    sliders = slider_values(editor, model_name, values)
    strength = editor.detail_strength(detail_value(detail))
    result = streams.edit(
        session,
        model_name,
        lambda: FaceStream(editor.model, editor.aligner),
        frame,
        sliders,
        strength,
    )
    return inline_frame(result.image, result.edited), result.note


def live_stop(library: ModelLibrary, *, session: str = "", streams: Streams) -> str:
    """The stream ended (stopped, or its time was up): free what the session's stream held."""
    streams.close(session)
    return "Camera stopped."


@dataclass
class LiveWebcam:
    camera: gr.Image  # streaming input: frames as the browser captures them
    edited: gr.HTML  # the edited frame as an <img>, no file per frame
    note: gr.Markdown
    section: gr.Accordion  # shown with face models only: the stream follows a face


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


def wire_live_webcam(
    webcam: LiveWebcam,
    controls: Sequence[gr.components.Component],
    library: ModelLibrary,
    streams: Streams,
    turns: int,
) -> None:
    """Each frame edited as it arrives with `controls` (the model's name, the sliders, "keep
    photo detail"), streams sharing `turns` frame edits (`LiveFrames`). When the stream ends
    (stop, time up, no frame for `LIVE_IDLE`) or the camera is cleared, the session's stream is
    freed."""
    live = LiveFrames(streams, turns)
    frame = live.limit(for_session(live_frame, library, ("detail",), streams=streams))
    stop = for_session(live_stop, library, streams=streams)
    webcam.camera.stream(
        frame,
        [controls[0], webcam.camera, *controls[1:]],
        [webcam.edited, webcam.note],
        stream_every=LIVE_EVERY,
        time_limit=LIVE_SECONDS,
        concurrency_limit=None,  # `LiveFrames` shares the turns and ends stopped streams
        show_progress="hidden",
        api_name="live_frame",
        api_visibility="private",  # the page's camera stream: not an endpoint for clients
    ).then(stop, None, webcam.note, api_visibility="private", show_progress="hidden")
    webcam.camera.clear(stop, None, webcam.note, api_visibility="private", show_progress="hidden")
