"""Reliability under load, faults and bad input, through the real server and real processes.

Bounded on purpose: the load test is 20 clients × 50 slider moves on a 64×64 model (about
2.5 minutes here: a gradio_client round trip costs ~230 ms, most of it outside our handler), the
training runs are a few hundred tiny steps.
"""

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
from contextlib import contextmanager
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
from fader.model import FaderNetwork
from fader.models import ModelLibrary
from tests.builders import make_class_folders
from tests.test_app import png, save_model, serve
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
    """Resident memory of this process (the server runs in it), from /proc."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def slider_values(client: int, move: int) -> list[float]:
    values = [0.0] * app.MAX_SLIDERS
    values[:2] = [((client * 7 + move) % 11) / 5 - 1, ((client + move * 3) % 7) / 3 - 1]
    return values


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
            if move == MOVES // 2:  # the first half warms up threads, arenas and connections
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
    grew = after - before  # over the second half's 500 moves: steady state, so about nothing
    print(f"RSS over the second half: {before:.0f} → {after:.0f} MB")
    assert grew < 100, f"RSS grew from {before:.0f} MB to {after:.0f} MB over 500 slider moves"


def test_memory_stays_flat_over_a_hundred_different_uploads(server, models, tmp_path):
    """The latent cache is bounded (32 photos), so uploads past it must not add memory."""
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
    assert handle and "2 faces found: editing the largest" in status

    _, status, handle = client.predict(
        face, handle_file(exif_rotated(tmp_path / "sideways.jpg")), api_name="/encode"
    )
    assert handle and "Face aligned" in status, "an EXIF-rotated photo is stood up first"

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
    assert handle, "the server still serves"


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
    assert handle


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


class ConcurrentDecodes:
    """Counts decoder passes running at the same moment; each pass is held 50 ms, so passes
    that may overlap do, and passes that a lock serialises cannot."""

    def __init__(self, model: FaderNetwork):
        self.active = self.most = 0
        self.lock = threading.Lock()
        model.decoder.register_forward_pre_hook(self.enter)
        model.decoder.register_forward_hook(self.leave)

    def enter(self, *_: object) -> None:
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        time.sleep(0.05)

    def leave(self, *_: object) -> None:
        with self.lock:
            self.active -= 1


def test_requests_run_side_by_side_up_to_the_queue_limit(models, tmp_path):
    library = ModelLibrary([models["scene"]])
    decodes = ConcurrentDecodes(library.editor(models["scene"]).model)
    with serve(library) as url:
        photo = tmp_path / "photo.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(
            photo
        )

        def edit(i: int) -> None:
            values = [i / 10, 1 - i / 10] + [0.0] * (app.MAX_SLIDERS - 2)
            client = Client(url, verbose=False)  # a visitor of their own, with their own photo
            photo_id = client.predict(models["scene"], handle_file(photo), api_name="/encode")[2]
            client.predict(models["scene"], None, photo_id, *values, api_name="/edit")

        decodes.most = 0
        with ThreadPoolExecutor(10) as pool:
            list(pool.map(edit, range(10)))
    assert decodes.most >= 2, "handlers ran one at a time: something holds a global lock"
    assert decodes.most <= app.QUEUE_CONCURRENCY, "the queue let more requests run than its limit"


@contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    """A real file system of `size` bytes at `path` (a full disk, for real), or a skip where
    this process may not mount one (mounting needs root)."""
    path.mkdir(parents=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


@contextmanager
def read_only_folder(path: Path) -> Iterator[Path]:
    """A folder nobody may write into: a read-only mount as root (root ignores permission
    bits), the permission bits otherwise."""
    if os.geteuid() == 0:
        with tmpfs(path, "1m", read_only=True):
            yield path
        return
    path.mkdir(parents=True)
    path.chmod(0o555)
    try:
        yield path
    finally:
        path.chmod(0o755)


def train_cli(*args: object) -> subprocess.CompletedProcess:
    """`python -m train …` as a user runs it."""
    command = [sys.executable, "-m", "train", "--preset", "tiny", "--workers", "1", *map(str, args)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def assert_refused(done: subprocess.CompletedProcess, message: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, done.stderr


def test_a_read_only_run_folder_or_cache_is_a_message_and_a_line_in_the_log(tmp_path: Path):
    data = make_class_folders(tmp_path / "daynight", per_class=6)
    with read_only_folder(tmp_path / "locked") as locked:
        assert_refused(
            train_cli("--data", data, "--out", locked / "run", "--cache-dir", tmp_path / "c"),
            f"could not write {locked / 'run'}",
        )
        out = tmp_path / "run"
        done = train_cli("--data", data, "--out", out, "--cache-dir", locked / "cache")
        assert_refused(done, f"could not write {locked / 'cache'}")
        assert "choose a folder you can write to" in done.stderr
        assert f"ERROR could not write {locked / 'cache'}" in (out / "train.log").read_text()


def test_a_full_disk_while_preprocessing_is_a_message_and_leaves_no_half_built_cache(
    tmp_path: Path,
):
    data = make_class_folders(tmp_path / "daynight", per_class=20)  # 40 × 3 KB at 32²
    with tmpfs(tmp_path / "small", "64k") as small:
        out = tmp_path / "run"
        done = train_cli("--data", data, "--out", out, "--cache-dir", small)
        assert_refused(done, "the disk is full: free some space or choose a disk with room")
        assert "ERROR could not write" in (out / "train.log").read_text()
        assert list(small.iterdir()) == [], "the staging folder was removed"


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def test_a_full_disk_at_a_checkpoint_keeps_the_last_good_one_and_says_so(tmp_path: Path):
    data = make_class_folders(tmp_path / "daynight")
    cache = ["--cache-dir", tmp_path / "cache", "--eval-every", 1000]
    measured = tmp_path / "measured"
    assert train_cli("--data", data, "--steps", 1, "--out", measured, *cache).returncode == 0
    checkpoint_size = (measured / "checkpoint.safetensors").stat().st_size
    # Room for one run folder and half a checkpoint more: the first save fits, the second one's
    # temporary file (written beside the last good checkpoint) does not.
    room = folder_bytes(measured) + checkpoint_size // 2
    with tmpfs(tmp_path / "disk", str(room)) as disk:
        out = disk / "run"
        done = train_cli("--data", data, "--steps", 4, "--save-every", 2, "--out", out, *cache)
        assert_refused(done, "the disk is full")
        assert f"The last good checkpoint ({out / 'checkpoint.safetensors'}) is kept" in done.stderr
        assert read_checkpoint_info(out / "checkpoint.safetensors")[0] == 2
        assert not list(out.glob("*.tmp")), "the partial checkpoint was removed"
        assert "ERROR could not write" in (out / "train.log").read_text()
        FaderNetwork.from_pretrained(out)


def test_a_staging_folder_left_by_kill_9_during_preprocessing_is_removed_by_the_next_run(
    tmp_path: Path,
):
    data = make_class_folders(tmp_path / "daynight", per_class=150)
    cache = tmp_path / "cache"
    args = ["--data", data, "--image-size", 256, "--cache-dir", cache, "--steps", 1]
    command = [sys.executable, "-m", "train", "--preset", "tiny", "--workers", "1"]
    process = subprocess.Popen(
        [*command, *map(str, args), "--out", str(tmp_path / "killed")],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not list(cache.glob(".*.tmp/staging.npy")):
        assert process.poll() is None and time.monotonic() < deadline, "preprocessing not seen"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    (left,) = cache.glob(".*.tmp")
    assert (left / "staging.npy").is_file(), "killed mid-way: the half-built cache is there"
    assert train_main([*map(str, args), "--preset", "tiny", "--out", str(tmp_path / "next")]) == 0
    assert not list(cache.glob(".*.tmp")), "the next run removed what the killed one left"
