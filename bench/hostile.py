"""A hostile visitor against `python app.py` on 127.0.0.1 (issue 28), measured beside the budget.

Starts the app with a whole-image model (the photo store and the routes are what is measured,
not face alignment) and reads the server's memory from /proc every 50 ms while it runs:

- the store: one visitor uploads a large photo and edits it; 64 new sessions each upload a tiny
  one; does the visitor's next edit still find the photo? Then a flood of SESSIONS new sessions
  uploading different 4000×3000 JPEGs, PARALLEL at a time: encodes that failed, the server's
  peak memory against its memory before the flood and the budget, and its memory at rest after;
- request bodies: a 300 MB body declared to `/gradio_api/queue/join` (answered 413 unread?);
- the disk: files written into Gradio's folder by 10 `data:` URLs of 2 MB of random bytes;
- live frames: 2 × LIVE_FRAMES viewers who read one frame and hang up, then one more viewer:
  seconds to its first frame; then VIEWERS viewers streaming at once: how many got frames.

The budget is the server's memory with no photo held, plus the store's byte budget, plus four
full-size copies of a photo (decoded pixels, content key, the face check's decode, preview and
crops: 4 × 46 MB at 12 MP, as PIL holds 4 bytes a pixel) for each encode Gradio runs at once.
Prints one JSON object.

    python bench/hostile.py [--sessions 48] [--parallel 16] [--viewers 16]
"""

import argparse
import contextlib
import io
import json
import os
import re
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from skimage import data as skimage_data

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app import LIVE_FRAMES, QUEUE_CONCURRENCY  # noqa: E402
from bench.app_load import serve  # noqa: E402
from fader.model import CENTER, FaderConfig, FaderNetwork  # noqa: E402
from fader.photo_store import StoreLimits  # noqa: E402
from tests.clips import clip  # noqa: E402
from tests.test_app import data_url  # noqa: E402
from tests.test_hosting import Viewer, as_frame, jpeg_url, raw_post, shown, tiny_png  # noqa: E402

MAX_SLIDERS = 16
WORKING_MB = 4 * 4000 * 3000 * 4 / 2**20  # an encode's copies of a 12 MP photo (4 bytes/pixel)
NEUTRAL = [0.0] * MAX_SLIDERS


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


class Peak:
    """The highest resident memory of a process while the `with` block runs."""

    def __init__(self, pid: int):
        self.pid, self.mb, self._done = pid, rss_mb(pid), threading.Event()

    def __enter__(self) -> "Peak":
        threading.Thread(target=self._watch, daemon=True).start()
        return self

    def _watch(self) -> None:
        while not self._done.wait(0.05):
            self.mb = max(self.mb, rss_mb(self.pid))

    def __exit__(self, *_: object) -> None:
        self._done.set()


def large_jpeg(seed: int) -> bytes:
    """A 4000×3000 photo of its own (the coffee, tinted per seed), as a phone would send it."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(skimage_data.coffee()).resize((4000, 3000))
    tint = Image.new("RGB", image.size, tuple(int(v) for v in rng.integers(0, 256, 3)))
    buffer = io.BytesIO()
    Image.blend(image, tint, 0.2).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def encode(url: str, model: str, photo: Path | dict) -> str:
    """The photo id an encode from a new session answers ("" when it failed)."""
    try:
        client = Client(url, verbose=False)
        sent = handle_file(photo) if isinstance(photo, Path) else photo
        return client.predict(model, sent, api_name="/encode")[2]
    except AppError:
        return ""


def store_attack(url: str, model: str, folder: Path) -> dict:
    """64 new sessions of one tiny photo each, against a visitor who has edited theirs."""
    photo = folder / "visitor.jpg"
    photo.write_bytes(large_jpeg(999))
    visitor = Client(url, verbose=False)
    _, _, photo_id = visitor.predict(model, handle_file(photo), api_name="/encode")

    def edits() -> bool:
        try:
            visitor.predict(model, None, photo_id, *NEUTRAL, api_name="/edit")
            return True
        except AppError:
            return False

    edited_before = edits()
    attackers = sum(bool(encode(url, model, data_url(tiny_png(seed)))) for seed in range(64))
    return {
        "attack_sessions_served": attackers,
        "visitor_edits_before": edited_before,
        "visitor_photo_kept": edits(),
    }


def flood(
    url: str, pid: int, model: str, folder: Path, sessions: int, parallel: int, idle: float
) -> dict:
    """`sessions` new sessions each encoding a different 12 MP photo, `parallel` at a time,
    against the budget: the server's memory at `idle`, the store's, an encode's working memory
    for each encode run at once."""
    photos = [folder / f"flood{seed}.jpg" for seed in range(sessions)]
    for seed, path in enumerate(photos):
        path.write_bytes(large_jpeg(seed))
    before = rss_mb(pid)
    with Peak(pid) as peak, ThreadPoolExecutor(parallel) as pool:
        ids = list(pool.map(lambda p: encode(url, model, p), photos))
    time.sleep(5)
    budget = idle + StoreLimits().bytes / 2**20 + QUEUE_CONCURRENCY * WORKING_MB
    return {
        "sessions": sessions,
        "parallel": parallel,
        "failed_encodes": sum(not i for i in ids),
        "server_mb_idle": round(idle),
        "server_mb_before": round(before),
        "server_mb_peak": round(peak.mb),
        "server_mb_at_rest": round(rss_mb(pid)),
        "budget_mb": round(budget),
        "within_budget": peak.mb <= budget,
    }


def bodies(url: str, pid: int) -> dict:
    before = rss_mb(pid)
    headers = f"Content-Type: application/json\r\nContent-Length: {300 * 2**20}\r\n"
    status = raw_post(url, "/gradio_api/queue/join", headers, b'{"data": ["')
    return {
        "declared_300_mb_status": int(status.split(" ")[1]),
        "server_mb_change": round(rss_mb(pid) - before),
    }


def disk(url: str, model: str) -> dict:
    """Files of 1 MB or more written into Gradio's folder while 10 `data:` URLs of 2 MB of
    random bytes are sent (the folder is shared with other servers: only new files count)."""
    from gradio.utils import get_upload_folder

    start = time.time() - 1
    for _ in range(10):
        encode(url, model, data_url(os.urandom(2 * 2**20)))
    written = []
    for path in Path(get_upload_folder()).rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file() and path.stat().st_mtime >= start and path.stat().st_size >= 2**20:
                written.append(path)
    return {"data_urls_sent": 10, "large_files_written": len(written)}


def live(url: str, model: str, viewers: int) -> dict:
    frame = as_frame(jpeg_url(clip(1, 0)[0]))
    for _ in range(2 * LIVE_FRAMES):
        Viewer(url, model).watch(frame, answers=1)
    start = time.perf_counter()
    Viewer(url, model).watch(frame, answers=1)
    fifth = time.perf_counter() - start
    crowd = [Viewer(url, model) for _ in range(viewers)]
    with ThreadPoolExecutor(viewers) as pool:
        watched = list(pool.map(lambda viewer: viewer.watch(frame, answers=20), crowd))
    served = [sum(shown(m)[0] is not None for m in answers) for answers in watched]
    return {
        "abandoned_streams": 2 * LIVE_FRAMES,
        "next_viewer_first_frame_s": round(fifth, 2),
        "viewers": viewers,
        "viewers_served": sum(n > 0 for n in served),
        "frames_per_viewer_min": min(served),
        "frames_per_viewer_max": max(served),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=48)
    parser.add_argument("--parallel", type=int, default=16)
    parser.add_argument("--viewers", type=int, default=16)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="fader-hostile-"))
    config = FaderConfig(attributes=["day", "night"], preprocessing=CENTER, image_size=64)
    FaderNetwork(config).save_pretrained(folder / "model")
    model = str(folder / "model")
    server, url = serve(folder / "model", None)
    try:
        encode(url, model, data_url(tiny_png(10_000)))  # the first encode loads what all need
        idle = rss_mb(server.pid)
        report = {"store_limits_mb": StoreLimits().bytes // 2**20}
        report["store_attack"] = store_attack(url, model, folder)
        report["flood"] = flood(url, server.pid, model, folder, args.sessions, args.parallel, idle)
        report["bodies"] = bodies(url, server.pid)
        report["disk"] = disk(url, model)
        report["live"] = live(url, model, args.viewers)
    finally:
        server.terminate()
        server.wait(30)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
