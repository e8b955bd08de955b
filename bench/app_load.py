"""Many visitors sliding at once: the real app server, batched decoding vs one move at a time.

Starts `python app.py` twice on 127.0.0.1 — with its default live-edit limit (concurrent moves
decoded in one batch) and with `--live-edits 1` (one move at a time, the baseline) — and drives
each with the same load: CLIENTS gradio_client visitors, each with their own photo, each making
EDITS slider moves as fast as answers come. Every answer is checked against a local decode of
that visitor's own photo at its own values (cross-talk), and errors are counted. Reports p50/p95
latency, edits/s, the server's memory before and after, and the ratio; and the decoder alone,
ms per image at batch 1 to 16 (what batching could gain at most). Prints one JSON object.

It also reports the CPU time each edit cost the server and the visitors (all of them run in
this one process, on the same cores): when the visitors' share is the larger one, edits/s
measures them more than the server, and `server_bound_edits_per_s` (the machine's cores over
the server's CPU time per edit) is what the server alone could answer.

    python bench/app_load.py [--clients 20] [--edits 30] [--image-size 256] [--preset paper]
"""

import argparse
import json
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from gradio_client import Client, handle_file
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fader.editor import Editor  # noqa: E402
from fader.model import CENTER, FaderConfig, FaderNetwork  # noqa: E402
from train.config import PRESETS  # noqa: E402

ATTRIBUTES = ["Smiling", "Male"]
MAX_SLIDERS = 16


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def values_for(client: int, move: int) -> list[float]:
    values = [0.0] * MAX_SLIDERS
    values[:2] = [((client * 7 + move) % 11) / 5 - 1, ((client + move * 3) % 7) / 3 - 1]
    return values


def serve(model: Path, live_edits: int | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, str(ROOT / "app.py"), "--model", str(model), "--host", "127.0.0.1"]
    command += ["--port", str(port)] + (["--live-edits", str(live_edits)] if live_edits else [])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FADER_OFFLINE": "1"}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(240):
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return server, url
        except OSError:
            if server.poll() is not None:
                raise RuntimeError(server.stderr.read().decode()) from None
            time.sleep(0.5)
    server.kill()
    raise RuntimeError("the app did not answer within 2 minutes")


def decoder_per_image(model: FaderNetwork, batches: list[int], repeats: int = 15) -> dict:
    """The decoder alone, as the app runs it (half the cores): ms per image at each batch size,
    the median of `repeats`. Its ratio at batch 1 to the best is what batching could gain at
    most, were decoding all of an edit's work."""
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    per_image = {}
    for batch in batches:
        latent = torch.randn(batch, *model.config.latent_shape)
        channels = model.slider_channels([0.5] * len(ATTRIBUTES), batch_size=batch)
        seconds = []
        with torch.inference_mode():
            model.decode(latent, channels)  # warm-up
            for _ in range(repeats):
                start = time.perf_counter()
                model.decode(latent, channels)
                seconds.append(time.perf_counter() - start)
        per_image[batch] = round(1000 * statistics.median(seconds) / batch, 2)
    return {
        "ms_per_image": per_image,
        "batch_ceiling": round(per_image[batches[0]] / min(per_image.values()), 2),
    }


def load(
    url: str, server: int, model: Path, photos: list[Path], edits: int, expected: list
) -> dict:
    def visitor(client: int) -> tuple[list[float], int, int]:
        api = Client(url, verbose=False)
        _, _, photo_id = api.predict(str(model), handle_file(photos[client]), api_name="/encode")
        seconds, errors, wrong = [], 0, 0
        for move in range(edits):
            start = time.perf_counter()
            try:
                crop, _, photo_id = api.predict(
                    str(model), None, photo_id, *values_for(client, move), api_name="/edit"
                )
                got = np.asarray(Image.open(crop), dtype=np.int16)  # a broken download: an error
            except Exception:
                errors += 1
                continue
            seconds.append(time.perf_counter() - start)
            step = got.shape[0] // expected[client][move].shape[0]  # small crops are enlarged
            if np.abs(got[::step, ::step] - expected[client][move]).max() > 2:
                wrong += 1
        return seconds, errors, wrong

    start, server_start, clients_start = time.perf_counter(), cpu_seconds(server), own_cpu()
    with ThreadPoolExecutor(len(photos)) as pool:
        results = list(pool.map(visitor, range(len(photos))))
    wall = time.perf_counter() - start
    server_ms = 1000 * (cpu_seconds(server) - server_start) / (len(photos) * edits)
    clients_ms = 1000 * (own_cpu() - clients_start) / (len(photos) * edits)
    ms = sorted(1000 * s for seconds, _, _ in results for s in seconds)
    return {
        "edits": len(ms),
        "errors": sum(e for _, e, _ in results),
        "cross_talk": sum(w for _, _, w in results),
        "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 1),
        "edits_per_s": round(len(ms) / wall, 2),
        "server_cpu_ms_per_edit": round(server_ms, 1),
        "visitors_cpu_ms_per_edit": round(clients_ms, 1),
        "server_bound_edits_per_s": round(1000 * os.cpu_count() / server_ms, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--edits", type=int, default=30)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    args = parser.parse_args()
    torch.manual_seed(0)
    settings = {**PRESETS[args.preset]["model"], "image_size": args.image_size}
    config = FaderConfig(attributes=ATTRIBUTES, preprocessing=CENTER, **settings)
    folder = Path(tempfile.mkdtemp(prefix="fader-load-"))
    model_folder = folder / "model"
    FaderNetwork(config).save_pretrained(model_folder)
    photos, expected = [], []
    reference = Editor(FaderNetwork.from_pretrained(model_folder))
    for client in range(args.clients):
        rng = np.random.default_rng(client)
        path = folder / f"photo{client}.png"
        Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(path)
        photos.append(path)
        photo_id = reference.load(path, session=str(client))
        crops = []
        for move in range(args.edits):
            values = dict(zip(ATTRIBUTES, values_for(client, move)[:2], strict=True))
            (crop,) = reference.decode(photo_id, [values], session=str(client))
            crops.append(np.asarray(crop, dtype=np.int16))
        expected.append(crops)

    report = {"clients": args.clients, "edits_each": args.edits, "model": settings}
    report["decoder"] = decoder_per_image(reference.model, [1, 4, 8, 16])
    for name, live_edits in [("one_at_a_time", 1), ("batched", None)]:
        server, url = serve(model_folder, live_edits)
        try:
            before = rss_mb(server.pid)
            result = load(url, server.pid, model_folder, photos, args.edits, expected)
            result |= {
                "server_mb_before": round(before),
                "server_mb_after": round(rss_mb(server.pid)),
            }
        finally:
            server.terminate()
            server.wait(30)
        report[name] = result
    for measure in ["edits_per_s", "server_bound_edits_per_s"]:
        report[f"{measure}_ratio"] = round(
            report["batched"][measure] / report["one_at_a_time"][measure], 2
        )
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
