"""A hostile visitor against the real server on 127.0.0.1 (issue 28): the live webcam's streams,
the photo gate on camera frames, request bodies, the disk, and the photo store each hold."""

import base64
import contextlib
import io
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import gradio as gr
import httpx
import numpy as np
import pytest
from gradio.data_classes import FileData
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from skimage import data as skimage_data
from starlette.middleware import Middleware

import app
from fader.edit import main as edit_main
from fader.editor import MAX_FACES
from fader.library import ModelLibrary, bundled_models
from fader.request_limits import MAX_BODY, RequestLimits
from page.queue_pace import IDLE_POLL
from tests.clips import clip
from tests.test_app import NEUTRAL, call_raw, data_url, png, serve

DIGITS = Path(__file__).resolve().parents[1] / "assets" / "examples" / "digits"

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture(scope="module")
def server(models: dict[str, str]) -> Iterator[str]:
    with serve(ModelLibrary([models["scene"], models["face"]], aligner="dlib")) as url:
        yield url


def jpeg_url(frame: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def as_frame(url: str) -> dict:
    """A camera frame as the page streams it: a data: URL, no file."""
    return {"url": url, "meta": {"_type": "gradio.FileData"}}


class Viewer:
    """One visitor of the live webcam over Gradio's HTTP API, as the page streams: joins with a
    first frame, reads the answers as server-sent events, posts each next frame."""

    def __init__(self, url: str, model: str):
        config = httpx.get(f"{url}config").json()
        live = next(d for d in config["dependencies"] if d.get("api_name") == "live_frame")
        self.url, self.model, self.fn, self.inputs = url, model, live["id"], len(live["inputs"])
        self.session = uuid.uuid4().hex[:12]
        self.event = ""

    def body(self, frame: dict) -> dict:
        data = [self.model, frame] + [0.0] * (self.inputs - 2)
        return {"data": data, "fn_index": self.fn, "session_hash": self.session}

    def watch(self, frame: dict, answers: int, send_more: bool = True) -> list[dict]:
        """The messages answering this viewer's frames: `answers` of them (frames or the end),
        a new frame posted after each when `send_more`; the connection then closes without
        saying so, as a closed laptop's would."""
        join = httpx.post(f"{self.url}gradio_api/queue/join", json=self.body(frame), timeout=60)
        self.event = join.json()["event_id"]
        received: list[dict] = []
        params = {"session_hash": self.session}
        with httpx.stream(
            "GET", f"{self.url}gradio_api/queue/data", params=params, timeout=120
        ) as s:
            for line in s.iter_lines():
                message = json.loads(line[5:]) if line.startswith("data:") else {}
                if message.get("msg") in {"process_streaming", "process_completed"}:
                    received.append(message)
                    if len(received) == answers or message["msg"] == "process_completed":
                        break
                    if send_more:
                        self.send(frame)
        return received

    def send(self, frame: dict) -> int:
        reply = httpx.post(f"{self.url}gradio_api/stream/{self.event}", json=self.body(frame))
        return reply.status_code


def shown(message: dict) -> tuple[np.ndarray | None, str]:
    """The edited frame an answer shows (None when it shows none) and its note."""
    data = message.get("output", {}).get("data") or ["", ""]
    html, note = data[0], data[1]
    if not isinstance(html, str) or "data:image/jpeg;base64," not in html:
        return None, note if isinstance(note, str) else ""
    encoded = html.split("data:image/jpeg;base64,", 1)[1].split('"', 1)[0]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded)))), note


def until(condition, seconds: float = 60.0) -> bool:
    """Whether `condition()` holds within `seconds` (checked every half second)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


# ---- 1. The live webcam: a stopped viewer frees its place; many viewers each get frames -------


def test_viewers_who_stop_without_closing_are_ended_and_hold_nobody_up(server, models):
    frame = as_frame(jpeg_url(clip(1, 0)[0]))
    gone = [Viewer(server, models["scene"]) for _ in range(2 * app.LIVE_FRAMES)]
    for viewer in gone:  # each reads its first frame, then drops the connection, never closing
        assert shown(viewer.watch(frame, answers=1)[0])[0] is not None
    quiet = Viewer(server, models["scene"])  # keeps listening, sends no second frame
    ended = quiet.watch(frame, answers=2, send_more=False)
    assert [m["msg"] for m in ended] == ["process_streaming", "process_completed"]
    fresh = Viewer(server, models["scene"])
    answers = fresh.watch(frame, answers=3)
    assert all(shown(m)[0] is not None for m in answers), "a new viewer is served at once"
    assert until(lambda: all(v.send(frame) == 404 for v in gone)), "their streams were ended"


def test_many_viewers_streaming_at_once_each_get_frames(server, models):
    frame = as_frame(jpeg_url(clip(1, 0)[0]))
    viewers = [Viewer(server, models["scene"]) for _ in range(4 * app.LIVE_FRAMES)]
    with ThreadPoolExecutor(len(viewers)) as pool:
        watched = list(pool.map(lambda v: v.watch(frame, answers=6), viewers))
    edited = [sum(shown(m)[0] is not None for m in answers) for answers in watched]
    assert min(edited) >= 1, edited


def test_a_session_starting_a_second_stream_ends_its_first(server, models):
    frame = as_frame(jpeg_url(clip(1, 0)[0]))
    first = Viewer(server, models["scene"])
    first.watch(frame, answers=1)
    second = Viewer(server, models["scene"])
    second.session = first.session
    threading.Thread(target=second.watch, args=(frame, 20), daemon=True).start()
    assert until(lambda: first.send(frame) == 404)


# ---- 2. Camera frames pass the photo gate -------------------------------------------------------


def upload(url: str, body: bytes, name: str = "frame.png") -> str:
    reply = httpx.post(f"{url}gradio_api/upload", files={"files": (name, body, "image/png")})
    return reply.json()[0]


def test_camera_frames_pass_the_photo_gate_and_are_shrunk_before_face_work(server, models):
    bomb = png(8000, 8000, 8, 2, b"")  # 64 megapixels in its header, a few bytes on disk
    for frame in [
        as_frame("data:image/png;base64," + base64.b64encode(bomb).decode()),
        {"path": upload(server, bomb), "meta": {"_type": "gradio.FileData"}},
    ]:
        (answer,) = Viewer(server, models["scene"]).watch(frame, answers=1)
        image, note = shown(answer)
        assert image is None and "too large" in note and "megapixels" in note, note
    wide = np.asarray(Image.fromarray(skimage_data.coffee()).resize((2600, 1700)))
    (answer,) = Viewer(server, models["scene"]).watch(as_frame(jpeg_url(wide)), answers=1)
    image, _ = shown(answer)
    assert image is not None and image.shape == (1255, 1920, 3)


# ---- 3. Every request bounded before it is read -------------------------------------------------


def raw_post(url: str, path: str, headers: str, body: bytes = b"") -> str:
    """The status line a POST gets when it declares its headers and sends `body` (or less)."""
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode() + body)
        return sock.recv(4096).decode(errors="replace").split("\r\n", 1)[0]


def test_a_body_over_its_routes_limit_is_refused_before_it_is_read(server):
    huge = f"Content-Type: application/json\r\nContent-Length: {300 * 2**20}\r\n"
    assert " 413 " in raw_post(server, "/gradio_api/queue/join", huge, b'{"data": ["')
    too_big = f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {300 * 2**20}\r\n"
    assert " 413 " in raw_post(server, "/gradio_api/upload", too_big, b"--b\r\n")

    def chunks() -> Iterator[bytes]:  # no length declared: counted as it comes
        yield b'{"data": ["'
        for _ in range(MAX_BODY // 2**20 + 2):
            yield b"x" * 2**20

    reply = httpx.post(f"{server}gradio_api/call/edit", content=chunks(), timeout=60)
    assert reply.status_code == 413 and "MB" in reply.text


def test_long_strings_in_any_slot_are_refused_and_never_echoed(server, models, tmp_path):
    client = Client(server, verbose=False)
    long = "x" * 2**20
    calls = [
        ("/edit", (models["scene"], None, long, *NEUTRAL)),
        ("/sweep", (models["scene"], None, "", long, 3, *NEUTRAL)),
        ("/encode", (long, None)),
        ("/edit", (models["scene"], None, "", long, *NEUTRAL[1:])),  # a slider
    ]
    for api, args in calls:
        with pytest.raises(AppError) as refused:
            client.predict(*args, api_name=api)
        message = str(refused.value)
        assert len(message) < 2000 and "x" * 300 not in message, (api, message[:200])


def test_every_input_gate_holds_in_the_copy_gradio_keeps_after_an_update(tmp_path):
    """An event that updates a component (an example's click sets the photo, a model switch the
    sliders and the sweep's list) leaves its session a new instance of the component's class,
    made as Gradio makes it: the gates must hold there too."""
    not_a_photo = tmp_path / "notes.png"
    not_a_photo.write_text("a text file renamed .png")
    with gr.Blocks():
        page = app.layout(ModelLibrary(list(bundled_models())))

    def kept(component: gr.components.Component) -> gr.components.Component:
        arguments = {**component.constructor_args, "visible": True, "render": False}
        arguments.pop("value", None)
        return type(component)(**arguments)

    for box in [page.image, page.webcam.camera]:
        refused = kept(box).preprocess(FileData(path=str(not_a_photo), orig_name="notes.png"))
        assert "not an image we can read" in refused.message
    long = "x" * 2**20
    slots = [page.model_name, page.sweep_attribute, page.photo_id, page.sliders[0], page.detail]
    for slot in [*slots, page.sweep_steps, page.faces]:
        with pytest.raises(gr.Error, match="at most"):
            kept(slot).preprocess(long)
    with pytest.raises(gr.Error, match="at most"):
        kept(page.faces).preprocess(list(range(MAX_FACES + 1)))


# ---- 4. Nothing written that is not deleted -----------------------------------------------------


def folder_bytes(folder: Path) -> int:
    """The bytes of the files under `folder` (those Gradio deletes meanwhile count 0)."""
    total = 0
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):
            total += path.stat().st_size if path.is_file() else 0
    return total


def abandoned_post(url: str, path: str, headers: str, body: bytes) -> None:
    """A POST that sends part of what it declared, then hangs up."""
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode() + body)
        time.sleep(0.5)  # the part sent is written to a temporary file


def test_the_cache_returns_to_its_size_after_the_sweep(models, tmp_path, monkeypatch):
    cache = tmp_path / "cache"  # this server's alone: other servers write to the default
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    library = ModelLibrary([models["scene"]], aligner="dlib")
    stalled = {"app_kwargs": {"middleware": [Middleware(RequestLimits, stalled_after=1)]}}
    with serve(library, cache_lifetime=10, **stalled) as url:
        before = folder_bytes(cache)
        photo = tmp_path / "coffee.jpg"
        Image.fromarray(skimage_data.coffee()).save(photo)
        client = Client(url, verbose=False)
        _, _, photo_id = client.predict(models["scene"], handle_file(photo), api_name="/encode")
        client.predict(models["scene"], None, photo_id, *NEUTRAL, api_name="/edit")
        client.predict(models["scene"], None, photo_id, *NEUTRAL, api_name="/export")
        for _ in range(3):  # data: URLs are read in memory: nothing of them reaches the disk
            noise = png(64, 64, 8, 2, b"\0" * 64) + os.urandom(2 * 2**20)
            call_raw(url, "encode", [models["scene"], data_url(noise)])
        partial = f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {2**22}\r\n"
        head = b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n'
        abandoned_post(url, "/gradio_api/upload", partial, head + b"0" * 2**20)
        assert folder_bytes(cache) > before
        assert until(lambda: folder_bytes(cache) <= before, 60), (folder_bytes(cache), before)
        assert not (cache / "data-urls").exists()


# ---- 5 and 6. A photo store one visitor cannot flush --------------------------------------------


def tiny_png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_sixty_four_tiny_uploads_leave_an_active_visitors_photo_loaded(server, models, tmp_path):
    photo = tmp_path / "coffee.jpg"
    Image.fromarray(skimage_data.coffee()).resize((1600, 1200)).save(photo)
    visitor = Client(server, verbose=False)
    _, _, photo_id = visitor.predict(models["scene"], handle_file(photo), api_name="/encode")
    visitor.predict(models["scene"], None, photo_id, *NEUTRAL, api_name="/edit")
    for seed in range(64):  # each call a new session, each photo a new one
        kind, (_, status, attacker_id) = call_raw(
            server, "encode", [models["scene"], data_url(tiny_png(seed))]
        )
        assert kind == "event: complete" and attacker_id, status
    _, _, same = visitor.predict(models["scene"], None, photo_id, *NEUTRAL, api_name="/edit")
    assert same == photo_id


# ---- 2 (the other routes). The CLI and library callers get the same gate ----------------------


def test_the_edit_cli_refuses_a_file_over_the_cap_by_its_size(tmp_path, capsys):
    big = tmp_path / "big.png"
    big.write_bytes(os.urandom(26 * 2**20))
    photo = tmp_path / "seven.png"
    Image.fromarray(skimage_data.coffee()).save(photo)
    code = edit_main([str(big), str(photo), "--model", "digits", "--out", str(tmp_path / "out")])
    assert code == 0
    assert "25 MB" in capsys.readouterr().err


def test_a_refused_upload_leaves_its_session_showing_no_photo_until_the_next_one_loads():
    """Work still queued for the photo shown before a refused upload (a slider move's export)
    asks whether that photo is still the session's latest: after the refusal it is not."""
    from fader.photo_store import PhotoStore

    store: PhotoStore[np.ndarray] = PhotoStore()  # anything with nbytes stands for a photo
    first = store.add("alice", "three", np.zeros(8))
    store.add("bob", "seven", np.zeros(8))
    assert store.latest("alice") == first
    store.show_none("alice")  # alice's next upload was refused
    assert store.latest("alice") is None and store.latest("bob") is not None
    second = store.add("alice", "eight", np.zeros(8))
    assert store.latest("alice") == second


def test_the_queue_looks_for_work_every_10_ms_while_none_waits_and_as_gradio_does_meanwhile(
    tmp_path,
):
    """Gradio's queue looks for work every millisecond while it has none (most of an idle
    server's CPU, BENCHMARKS.md): the app's looks every 10 ms then, and at Gradio's own pace
    while events wait for a place under their concurrency limit (`page.queue_pace`), here
    twelve exports of a large photo, four at a time. An upgrade of Gradio that changes the
    queue fails `build_demo`."""
    photo = tmp_path / "three.png"
    Image.open(DIGITS / "three.png").resize((1200, 1200)).save(photo)
    with serve(ModelLibrary(list(bundled_models()))) as url:
        (demo,) = [d for d in list(app.DEMO_MOVES) if d.is_running and d.local_url == url]
        queue = demo._queue
        idle = max(queue.busy_poll, IDLE_POLL)  # Gradio's own: 1 ms here (50 on Windows)
        assert queue.sleep_when_free == idle == 0.01, "an event waits at most 10 ms more"
        client = Client(url, verbose=False)
        _, _, photo_id = client.predict("digits", handle_file(photo), api_name="/encode")
        export = ("digits", None, photo_id, *NEUTRAL)
        client.predict(*export, api_name="/export")  # the exports' place in the queue, made
        exports = [client.submit(*export, api_name="/export") for _ in range(12)]
        paces = set()
        while not all(job.done() for job in exports):
            paces.add(queue.sleep_when_free)
            time.sleep(0.001)
        assert all(Path(job.result()).is_file() for job in exports)
        assert queue.busy_poll in paces, "events waiting for a place start at Gradio's pace"
        assert queue.sleep_when_free == idle
        client.close()
