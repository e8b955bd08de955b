"""Reliability under load, faults and bad input, through the real server and real processes.

Bounded on purpose: the load test is 20 clients × 50 slider moves on a 64×64 model (about
2.5 minutes here: a gradio_client round trip costs ~230 ms, most of it outside our handler), the
training runs are a few hundred tiny steps.
"""

import gc
import io
import json
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from safetensors.torch import load_file
from skimage import data as skimage_data

import app
from fader.editor import Editor
from fader.heap import return_freed_memory
from fader.library import ModelLibrary
from fader.model import FaderNetwork
from page.sliders import MAX_SLIDERS
from tests.builders import make_class_folders, save_model
from tests.test_app import png, serve
from train.__main__ import main as train_main
from train.checkpoint import read_checkpoint_info

ROOT = Path(__file__).resolve().parents[1]
CLIENTS, MOVES = 20, 50


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("models")
    return {
        "face": save_model(root / "face", "celeba", ["Smiling", "Male"]),
        "scene": save_model(root / "scene", "center", ["day", "night"]),
    }


@pytest.fixture(scope="module")
def server(models: dict[str, str]) -> Iterator[str]:
    with serve(ModelLibrary([models["face"], models["scene"]], aligner="dlib")) as url:
        yield url


def rss_mb() -> float:
    """Resident memory of this process (the server runs in it), from /proc, after the heap has
    handed its free pages back: what is held, not what glibc's per-thread arenas keep cached
    (20 client threads and the server's handlers each have one here)."""
    gc.collect()
    return_freed_memory()
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def slider_values(client: int, move: int) -> list[float]:
    values = [0.0] * MAX_SLIDERS
    values[:2] = [((client * 7 + move) % 11) / 5 - 1, ((client + move * 3) % 7) / 3 - 1]
    return values


def assert_edits(client: Client, model: str, photo_id: str) -> None:
    """The id came back usable: editing it gives a square crop, changed by the sliders."""
    neutral, _, same = client.predict(model, None, photo_id, *[0.0] * MAX_SLIDERS, api_name="/edit")
    smiling, _, _ = client.predict(
        model, None, photo_id, *[2.0] + [0.0] * (MAX_SLIDERS - 1), api_name="/edit"
    )
    width, height = Image.open(neutral).size
    assert same == photo_id and width == height >= 64
    assert not np.array_equal(np.asarray(Image.open(neutral)), np.asarray(Image.open(smiling)))


def test_twenty_clients_sliding_at_once_each_get_their_own_images(server, models, tmp_path):
    """Every answer is the decode of that client's own photo at that client's own values."""
    model = models["scene"]
    photos = []
    for client in range(CLIENTS):
        rng = np.random.default_rng(client)
        path = tmp_path / f"photo{client}.png"
        Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(path)
        photos.append(path)
    reference = Editor(FaderNetwork.from_pretrained(model))
    handles = [reference.load(Image.open(p), session=str(i)) for i, p in enumerate(photos)]

    halfway_rss: list[float] = []
    halfway = threading.Barrier(CLIENTS, lambda: halfway_rss.append(rss_mb()), timeout=300)

    def slide(client: int) -> list[tuple[int, np.ndarray]]:
        api = Client(server, verbose=False)
        _, _, handle = api.predict(model, handle_file(photos[client]), api_name="/encode")
        crops = []
        for move in range(MOVES):
            if move == 2 * MOVES // 3:  # warm-up: threads, arenas, connections (still ~35 MB
                # between moves 20 and 40 in a 100-move run, then flat)
                halfway.wait()
            crop, _, handle = api.predict(
                model, None, handle, *slider_values(client, move), api_name="/edit"
            )
            shown = np.asarray(Image.open(crop), dtype=np.int16)
            step = shown.shape[0] // 64  # the page shows a 64² crop enlarged, pixel for pixel
            crops.append((move, shown[::step, ::step]))
        return crops

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(slide, range(CLIENTS)))
    after = rss_mb()

    for client, crops in enumerate(results):
        assert len(crops) == MOVES
        for move, crop in crops:
            values = dict(zip(["day", "night"], slider_values(client, move)[:2], strict=True))
            (expected,) = reference.decode(handles[client], [values], session=str(client))
            difference = np.abs(crop - np.asarray(expected, dtype=np.int16))
            assert difference.max() <= 2, f"client {client}, move {move}: not its own image"
    (before,) = halfway_rss
    grew = after - before  # over the last third's moves: steady state, so about nothing
    print(f"RSS over the last third: {before:.0f} → {after:.0f} MB")
    assert grew < 100, f"RSS grew from {before:.0f} MB to {after:.0f} MB over the last moves"


def test_memory_stays_flat_over_a_hundred_different_uploads(server, models, tmp_path):
    """The photo store is bounded (8 photos a session), so uploads past it must not add memory."""
    api = Client(server, verbose=False)
    rss_after: dict[int, float] = {}
    for upload in range(1, 101):
        rng = np.random.default_rng(1000 + upload)
        path = tmp_path / "upload.jpg"
        Image.fromarray(rng.integers(0, 256, (600, 800, 3), dtype=np.uint8)).save(path)
        _, note, _ = api.predict(models["scene"], handle_file(path), api_name="/encode")
        assert note.startswith("Centre square"), note
        rss_after[upload] = rss_mb()
    grew = rss_after[100] - rss_after[40]  # a leaked 800×600 photo per upload would be 86 MB
    print(f"RSS after upload 40: {rss_after[40]:.0f} MB, after 100: {rss_after[100]:.0f} MB")
    assert grew < 30, f"RSS grew by {grew:.0f} MB over uploads 41…100"


def several_faces(path: Path) -> Path:
    """Two people: the astronaut, smaller, and Grace Hopper (matplotlib's sample photo)."""
    import matplotlib

    hopper = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    group = Image.new("RGB", (1200, 700), "white")
    group.paste(Image.fromarray(skimage_data.astronaut()).resize((384, 384)), (0, 150))
    group.paste(hopper.convert("RGB"), (600, 50))
    group.save(path, quality=95)
    return path


def exif_rotated(path: Path) -> Path:
    """The astronaut stored on its side, with EXIF orientation 8 saying how to stand it up."""
    sideways = Image.fromarray(skimage_data.astronaut()).transpose(Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[0x0112] = 8
    sideways.save(path, quality=95, exif=exif)
    return path


def decompression_bomb(path: Path) -> Path:
    """A small file that would decode to 20000×20000 grey pixels (400 MB)."""
    side = 20000
    compressor = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * side
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    path.write_bytes(png(side, side, 8, 0, b"")[:-12] + idat(body) + png(1, 1, 8, 0, b"")[-12:])
    return path


def idat(body: bytes) -> bytes:
    return (
        struct.pack(">I", len(body))
        + b"IDAT"
        + body
        + struct.pack(">I", zlib.crc32(b"IDAT" + body))
    )


def test_more_bad_inputs_through_the_real_server(server, models, tmp_path):
    client = Client(server, verbose=False)
    face = models["face"]
    _, status, handle = client.predict(
        face, handle_file(several_faces(tmp_path / "group.jpg")), api_name="/encode"
    )
    assert "Face aligned with dlib" in status and "2 faces found" in status
    assert_edits(client, face, handle)

    _, status, handle = client.predict(
        face, handle_file(exif_rotated(tmp_path / "sideways.jpg")), api_name="/encode"
    )
    assert "Face aligned with dlib" in status, "an EXIF-rotated photo is stood up first"
    assert_edits(client, face, handle)

    bomb = decompression_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 2_000_000
    _, status, handle = client.predict(face, handle_file(bomb), api_name="/encode")
    assert handle == "" and re.search("(?i)too large.*megapixels", status)
    assert "bomb" not in status and "DOS" not in status, "no library wording"

    with pytest.raises(AppError, match="(?i)not in the list of choices|unknown model"):
        client.predict("../../etc/passwd", handle_file(bomb), api_name="/encode")
    _, _, handle = client.predict(
        face, handle_file(several_faces(tmp_path / "again.jpg")), api_name="/encode"
    )
    assert_edits(client, face, handle)  # the server still serves


def upload(server: str, name: str, body: bytes) -> urllib.request.Request:
    """A multipart POST to Gradio's upload route, as the page sends a photo."""
    boundary = "fader-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    )
    return urllib.request.Request(
        f"{server.rstrip('/')}/gradio_api/upload",
        data=head.encode() + body + f"\r\n--{boundary}--\r\n".encode(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )


def test_an_upload_over_the_size_cap_is_refused_and_the_server_keeps_serving(
    server, models, tmp_path
):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(upload(server, "big.png", os.urandom(26 * 1024 * 1024)), timeout=60)
    assert refused.value.code == 413
    client = Client(server, verbose=False)
    _, _, handle = client.predict(
        models["face"], handle_file(several_faces(tmp_path / "ok.jpg")), api_name="/encode"
    )
    assert_edits(client, models["face"], handle)


def test_no_file_outside_the_apps_own_folders_is_served(server, models):
    def fetch(path: str) -> int:
        try:
            with urllib.request.urlopen(f"{server.rstrip('/')}/gradio_api/file={path}") as reply:
                return reply.status
        except urllib.error.HTTPError as refused:
            return refused.code

    photo = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(photo, format="PNG")
    with urllib.request.urlopen(upload(server, "red.png", photo.getvalue())) as reply:
        (uploaded,) = json.loads(reply.read())
    assert fetch(uploaded) == 200, "the app's own uploads are served"
    for outside in ["/etc/passwd", f"{models['face']}/config.json", f"{ROOT}/app.py"]:
        assert fetch(outside) in {403, 404}, outside


def test_kill_9_mid_run_then_resume_ends_like_an_uninterrupted_run(tmp_path: Path):
    data = make_class_folders(tmp_path / "daynight")
    common = ["--data", str(data), "--preset", "tiny", "--eval-every", "1000",
              "--cache-dir", str(tmp_path / "cache"), "--workers", "1"]  # fmt: skip
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert train_main([*common, "--steps", "200", "--out", str(straight)]) == 0

    command = [sys.executable, "-m", "train", *common, "--steps", "200", "--save-every", "5",
               "--out", str(killed)]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoint = killed / "checkpoint.safetensors"
    deadline = time.monotonic() + 120
    while not (checkpoint.is_file() and read_step(checkpoint) >= 15):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    step = read_checkpoint_info(checkpoint)[0]
    assert 15 <= step < 200, "killed mid-run, with a good checkpoint on disk"

    assert train_main(["--out", str(killed), "--resume"]) == 0
    a = load_file(str(straight / "model.safetensors"))
    b = load_file(str(killed / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def read_step(checkpoint: Path) -> int:
    try:
        return read_checkpoint_info(checkpoint)[0]
    except Exception:  # being replaced right now: look again
        return -1


def test_a_checkpoint_half_written_by_a_dead_process_never_replaces_the_good_one(tmp_path):
    data = make_class_folders(tmp_path / "daynight")
    out = tmp_path / "run"
    common = ["--cache-dir", str(tmp_path / "cache"), "--workers", "1"]
    assert train_main(["--data", str(data), "--preset", "tiny", "--steps", "4",
                       "--out", str(out), *common]) == 0  # fmt: skip
    good = (out / "checkpoint.safetensors").read_bytes()
    # What a save killed mid-write leaves: the first half of a checkpoint, under the temp name.
    (out / "checkpoint.safetensors.tmp").write_bytes(good[: len(good) // 2])
    assert (out / "checkpoint.safetensors").read_bytes() == good
    assert train_main(["--out", str(out), "--resume", "--steps", "8"]) == 0
    assert read_checkpoint_info(out / "checkpoint.safetensors")[0] == 8
    assert not (out / "checkpoint.safetensors.tmp").exists()
    FaderNetwork.from_pretrained(out)


class RunsCode:
    """A pickle that would create a file if anything unpickled it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_named_model_safetensors_is_refused_and_never_run(tmp_path: Path):
    folder = Path(save_model(tmp_path / "m", "center", ["day"]))
    marker = tmp_path / "code-ran"
    torch.save({"encoder.weight": RunsCode(marker)}, folder / "model.safetensors")
    with pytest.raises(ValueError, match="not a safetensors file"):
        FaderNetwork.from_pretrained(folder)
    assert not marker.exists(), "nothing in the file was executed"


class SlowDecodes:
    """Holds each decoder pass 50 ms, so slider moves that arrive meanwhile queue behind it."""

    def __init__(self, model: FaderNetwork):
        model.decoder.register_forward_pre_hook(lambda *_: time.sleep(0.05))


def test_concurrent_slider_moves_are_decoded_together_up_to_the_live_limit(models, tmp_path):
    library = ModelLibrary([models["scene"]])
    editor = library.editor(models["scene"])
    SlowDecodes(editor.model)
    with serve(library) as url:
        photo = tmp_path / "photo.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(
            photo
        )
        clients = [Client(url, verbose=False) for _ in range(10)]  # visitors, each their own
        photo_ids = [
            c.predict(models["scene"], handle_file(photo), api_name="/encode")[2] for c in clients
        ]
        editor.decoder.batch_sizes.clear()

        def edit(i: int) -> None:
            values = [i / 10, 1 - i / 10] + [0.0] * (MAX_SLIDERS - 2)
            clients[i].predict(models["scene"], None, photo_ids[i], *values, api_name="/edit")

        with ThreadPoolExecutor(10) as pool:
            list(pool.map(edit, range(10)))
    sizes = editor.decoder.batch_sizes
    assert sum(sizes) == 10 and max(sizes) >= 2, f"moves decoded one at a time: {sizes}"
    assert max(sizes) <= app.LIVE_EDITS, "more moves ran at once than the live-edit limit"
