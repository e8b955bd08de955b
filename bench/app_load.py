"""Many visitors sliding at once: the real app server under load, two code trees side by side.

Starts `python app.py` on 127.0.0.1 from each code tree asked for (`--code before=REV` checks out
a commit, `.` is this working tree: `bench/servers.py`, as `bench/move_cost.py` does) and drives
each with the same load: CLIENTS visitors, each uploading its own photo and then making EDITS
slider moves as fast as answers come.

The visitors are plain HTTP clients, one coroutine each on one event loop in this process
(httpx), so that they cost the machine much less than the server they measure: as gradio_client
threads they spent 2.5–2.9× the server's CPU time on each edit, and edits/s measured them. Each
talks to the server as Gradio's own clients do:

- arriving: its photo POSTed to `/gradio_api/upload`, then `/encode` called with that file;
- a move through the API's queued `/edit` (the default route): `POST /gradio_api/call/edit` with
  the arguments `/gradio_api/info` lists (at their defaults but the model, the photo_id, the two
  attributes and "keep photo detail") → an event id, `GET` its event stream until `complete`,
  then the two picture files it names downloaded;
- a move through the page's live edit (`--routes live`): what the page sends for a step of a
  drag (`Server.live_move_requests`), outside the queue, the crop and the preview inline: one
  POST to the app's own route, or, before that route, the edit and the sliders' `settle` as two
  Gradio events.

After the timed moves, every answer is checked against a local decode of that visitor's own
photo at its own values (cross-talk: 0 expected; a picture that does not open is an error).
Reports, per route and tree: p50/p95 latency, edits/s, the CPU time each edit cost the server
(`/proc/PID/stat`) and the visitors (this process), `server_bound_edits_per_s` (the machine's
cores over the server's CPU per edit: what the server alone could answer), the server's memory
before the visitors arrive and after their moves, and each tree's ratios to the first one named.
Prints one JSON object; `--out` writes it to a file too.

    python bench/app_load.py --code before=REV --code after=. [--clients 20] [--edits 30]
        [--routes api live] [--preset paper] [--image-size 256] [--out FILE]
"""

import argparse
import asyncio
import base64
import io
import json
import os
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image
from servers import (
    Server,
    add_code_option,
    checkout,
    live_pictures,
    named_codes,
    revision_of,
    server_env,
    serving,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fader.editor import Editor  # noqa: E402
from fader.model import CENTER, FaderConfig, FaderNetwork  # noqa: E402
from fader.web_pictures import CROP_QUALITY  # noqa: E402
from train.config import PRESETS  # noqa: E402

ATTRIBUTES = ["Smiling", "Male"]
MAX_SLIDERS = 16  # the page's slider pool: its live edit takes them all
ROUTES = ("api", "live")  # the API's /edit (queued, files), the page's live edit (inline)
INLINE_PICTURE = re.compile(r'src="data:image/\w+;base64,([^"]+)"')
TIMEOUT = 300  # seconds a visitor waits for one answer: a queue 20 deep on 2 busy cores


def values_for(client: int, move: int) -> list[float]:
    """The attributes' values for a visitor's move: different for each visitor and move."""
    return [((client * 7 + move) % 11) / 5 - 1, ((client + move * 3) % 7) / 3 - 1]


# ---- The model, the photos and the answers expected --------------------------------------------


def make_model(folder: Path, preset: str, image_size: int) -> dict:
    """A centre-square model of the preset's shape, random weights (speed does not depend on
    training), saved in `folder`; its settings."""
    torch.manual_seed(0)
    settings = {**PRESETS[preset]["model"], "image_size": image_size}
    config = FaderConfig(attributes=ATTRIBUTES, preprocessing=CENTER, **settings)
    FaderNetwork(config).save_pretrained(folder)
    return settings


def make_photos(folder: Path, clients: int) -> list[Path]:
    """Each visitor's own 640×480 photo: noise, so that no two crops look alike."""
    paths = []
    for client in range(clients):
        rng = np.random.default_rng(client)
        paths.append(folder / f"photo{client}.png")
        Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def expected_crops(editor: Editor, photos: list[Path], edits: int, detail: float) -> list:
    """For each visitor and move, the crop a local decode of its photo at its values gives."""
    expected = []
    for client, photo in enumerate(photos):
        photo_id = editor.load(photo, session=str(client))
        values = [dict(zip(ATTRIBUTES, values_for(client, m), strict=True)) for m in range(edits)]
        crops = editor.decode(photo_id, values, session=str(client), detail=detail)
        expected.append([np.asarray(crop, dtype=np.int16) for crop in crops])
    return expected


# ---- A visitor: plain HTTP, as Gradio's own clients talk ---------------------------------------


class Refused(Exception):
    """The server answered a call with an error, or its event stream ended with no answer."""


@dataclass
class Visit:
    """One visitor's moves: each answered move's seconds and its pictures (the crop's and the
    preview's bytes, checked after the load), and the moves that got no answer (the first
    one's reason kept, to say what went wrong)."""

    seconds: list[float] = field(default_factory=list)
    answers: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)
    errors: int = 0
    first_error: str | None = None


async def queued_call(http: httpx.AsyncClient, api_name: str, data: list, session: str) -> list:
    """`api_name` called through Gradio's queue: the call's POST answers an event id, whose
    event stream ends with the outputs (`complete`) or an `error`."""
    body = {"data": data, "session_hash": session}
    reply = await http.post(f"gradio_api/call/{api_name}", json=body)
    reply.raise_for_status()
    event_id, event = reply.json()["event_id"], None
    async with http.stream("GET", f"gradio_api/call/{api_name}/{event_id}") as stream:
        stream.raise_for_status()
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "complete":
                return json.loads(line.removeprefix("data: "))
            elif line.startswith("data: ") and event == "error":
                raise Refused(line.removeprefix("data: "))
    raise Refused(f"{api_name}'s event stream ended without an answer")


async def arrive(http: httpx.AsyncClient, photo: Path, model: str, session: str) -> str:
    """The visitor's photo uploaded and encoded: its photo_id."""
    files = {"files": (photo.name, photo.read_bytes(), "image/png")}
    reply = await http.post("gradio_api/upload", files=files)
    reply.raise_for_status()
    uploaded = {"path": reply.json()[0], "meta": {"_type": "gradio.FileData"}}
    *_, photo_id = await queued_call(http, "encode", [model, uploaded], session)
    if not photo_id:
        raise Refused(f"{photo.name} was not encoded")
    return photo_id


def edit_arguments(server: Server, model: str, detail: float) -> Callable[[str, list], list]:
    """The API's /edit arguments for a move (a photo_id, the attributes' values): all of them
    at the defaults `/gradio_api/info` lists (as gradio_client fills them), but the model, the
    photo (by its id), the attributes' sliders and "keep photo detail", so that either tree's
    signature is called right."""
    info = httpx.get(f"{server.url}gradio_api/info", timeout=30).json()
    parameters = info["named_endpoints"]["/edit"]["parameters"]
    names = [parameter["parameter_name"] for parameter in parameters]
    defaults = [parameter.get("parameter_default") for parameter in parameters]

    def arguments(photo_id: str, values: list[float]) -> list:
        data = [model, None, photo_id, *values, *defaults[3 + len(values) :]]
        if "detail" in names:
            data[names.index("detail")] = detail
        return data

    return arguments


Move = Callable[[str, list[float]], Awaitable[tuple[bytes, bytes]]]


def api_mover(http: httpx.AsyncClient, session: str, arguments: Callable) -> Move:
    """A move through the API's queued /edit: the crop's and the preview's files downloaded."""

    async def move(photo_id: str, values: list[float]) -> tuple[bytes, bytes]:
        crop, preview, _ = await queued_call(http, "edit", arguments(photo_id, values), session)
        downloads = [http.get(picture["url"]) for picture in (crop, preview)]
        pictures = await asyncio.gather(*downloads)
        for picture in pictures:
            picture.raise_for_status()
        return pictures[0].content, pictures[1].content

    return move


def live_mover(
    server: Server, http: httpx.AsyncClient, session: str, model: str, detail: float
) -> Move:
    """A move as the page sends it: one POST outside the queue, the pictures inline."""

    async def move(photo_id: str, values: list[float]) -> tuple[bytes, bytes]:
        sliders = [*values, *[0.0] * (MAX_SLIDERS - len(values))]
        requests = server.live_move_requests(session, model, photo_id, sliders, detail)
        # sent together, as the page sends its events (each on its own, not one after another)
        replies = await asyncio.gather(*(http.post(route, json=body) for route, body in requests))
        for reply in replies:
            reply.raise_for_status()
        crop, preview = [INLINE_PICTURE.search(html) for html in live_pictures(replies[0].json())]
        if crop is None or preview is None:
            raise Refused("the live edit answered no pictures")
        return base64.b64decode(crop.group(1)), base64.b64decode(preview.group(1))

    return move


async def slide(move: Move, client: int, photo_id: str | BaseException, edits: int) -> Visit:
    """A visitor's moves, each sent as soon as the last is answered (none when its photo was
    refused: all of them errors)."""
    if not isinstance(photo_id, str):
        return Visit(errors=edits, first_error=f"its photo: {reason(photo_id)}")
    visit = Visit()
    for number in range(edits):
        start = time.perf_counter()
        try:
            visit.answers[number] = await move(photo_id, values_for(client, number))
        except (httpx.HTTPError, Refused, KeyError, ValueError, TypeError) as error:
            visit.errors += 1
            visit.first_error = visit.first_error or reason(error)
            continue
        visit.seconds.append(time.perf_counter() - start)
    return visit


def reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:300]


# ---- The load ----------------------------------------------------------------------------------


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def load(
    server: Server, route: str, model: str, photos: list[Path], edits: int, detail: float
) -> tuple[dict, list[Visit]]:
    """Every visitor arrives (uploads and encodes its photo), makes one move to warm up, and
    then slides, all at once; the moves are timed, and the CPU they cost the server and the
    visitors counted."""
    sessions = [f"{route}-visitor{client}-{uuid.uuid4().hex[:8]}" for client in range(len(photos))]
    clients = [httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) for _ in photos]
    if route == "api":
        arguments = edit_arguments(server, model, detail)
        moves = [api_mover(http, s, arguments) for http, s in zip(clients, sessions, strict=True)]
    else:
        moves = [
            live_mover(server, http, s, model, detail)
            for http, s in zip(clients, sessions, strict=True)
        ]
    try:
        memory_before, start = server.memory_mb(), time.perf_counter()
        arrivals = [
            arrive(http, photo, model, session)
            for http, photo, session in zip(clients, photos, sessions, strict=True)
        ]
        photo_ids = await asyncio.gather(*arrivals, return_exceptions=True)
        arrived_s = time.perf_counter() - start
        # One untimed move each first: the server's and the clients' first-call costs.
        warm_ups = [
            move(photo_id, values_for(client, -1))
            for client, (move, photo_id) in enumerate(zip(moves, photo_ids, strict=True))
            if isinstance(photo_id, str)
        ]
        await asyncio.gather(*warm_ups, return_exceptions=True)
        slides = [
            slide(move, client, photo_id, edits)
            for client, (move, photo_id) in enumerate(zip(moves, photo_ids, strict=True))
        ]
        server_cpu, visitors_cpu, start = server.cpu(), own_cpu(), time.perf_counter()
        visits = await asyncio.gather(*slides)
        wall = time.perf_counter() - start
        server_cpu, visitors_cpu = server.cpu() - server_cpu, own_cpu() - visitors_cpu
    finally:
        await asyncio.gather(*(http.aclose() for http in clients))
    moves_made = len(photos) * edits
    summary = {
        "arrivals_refused": sum(not isinstance(photo_id, str) for photo_id in photo_ids),
        "arrival_s": round(arrived_s, 2),
        "moves_s": round(wall, 2),
        "server_cpu_ms_per_edit": round(1000 * server_cpu / moves_made, 1),
        "visitors_cpu_ms_per_edit": round(1000 * visitors_cpu / moves_made, 1),
        "server_mb_before": round(memory_before),
        "server_mb_after": round(server.memory_mb()),
    }
    return summary, visits


def as_sent(crop: np.ndarray, picture_format: str) -> np.ndarray:
    """A locally decoded crop as the server sends it: a JPEG crop (the page's face-sized ones)
    encoded as `fader.web_pictures` encodes it and read back, so the same pixels compare
    equal; a PNG's pixels as they are."""
    if picture_format != "JPEG":
        return crop
    buffer = io.BytesIO()
    Image.fromarray(crop.astype(np.uint8)).save(buffer, "JPEG", quality=CROP_QUALITY, subsampling=0)
    return np.asarray(Image.open(buffer).convert("RGB"), dtype=np.int16)


def alike(got: np.ndarray, want: np.ndarray, picture_format: str) -> bool:
    """Within 2 levels everywhere; a JPEG also within a level on average: the server's decode
    and this process's differ by float rounding, which its quantisation may turn into a few
    levels at a few pixels (another visitor's crop is tens of levels away)."""
    difference = np.abs(got - want)
    return difference.max() <= 2 or (picture_format == "JPEG" and difference.mean() <= 1)


def checked(visits: list[Visit], expected: list) -> tuple[int, int]:
    """Answers whose pictures do not open (broken), and crops that are not the local decode of
    the visitor's own photo at its own values, sent as the server sends it (cross-talk)."""
    broken = wrong = 0
    for client, visit in enumerate(visits):
        for move, (crop, preview) in visit.answers.items():
            try:
                picture = Image.open(io.BytesIO(crop))
                got = np.asarray(picture.convert("RGB"), dtype=np.int16)
                Image.open(io.BytesIO(preview)).load()
            except OSError:
                broken += 1
                continue
            want = expected[client][move]
            step = max(1, got.shape[0] // want.shape[0])  # a small crop is enlarged on the API
            got = got[::step, ::step]
            if got.shape != want.shape or not alike(
                got, as_sent(want, picture.format), picture.format
            ):
                wrong += 1
    return broken, wrong


def measured(summary: dict, visits: list[Visit], expected: list) -> dict:
    """The load's figures: latency and rate over the answered moves, errors, cross-talk."""
    broken, wrong = checked(visits, expected)
    ms = sorted(1000 * s for visit in visits for s in visit.seconds)
    server_ms = summary["server_cpu_ms_per_edit"]
    return {
        "edits": len(ms) - broken,
        "errors": sum(visit.errors for visit in visits) + broken,
        "cross_talk": wrong,
        "p50_ms": round(statistics.median(ms), 1) if ms else None,
        "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 1) if ms else None,
        "edits_per_s": round((len(ms) - broken) / summary["moves_s"], 2),
        **summary,
        "server_bound_edits_per_s": round(1000 * os.cpu_count() / server_ms, 1),
        "first_error": next((v.first_error for v in visits if v.first_error), None),
    }


RATIOS = ("edits_per_s", "server_bound_edits_per_s", "server_cpu_ms_per_edit", "p50_ms")


def ratios(route: dict, baseline: str) -> dict:
    """Each tree's figures over the first tree's."""
    return {
        f"{code}_over_{baseline}": {
            name: round(figures[name] / route[baseline][name], 2)
            for name in RATIOS
            if figures[name] and route[baseline][name]
        }
        for code, figures in route.items()
        if code != baseline
    }


# ---- The run -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_code_option(parser)
    parser.add_argument("--clients", type=int, default=20, help="visitors at once")
    parser.add_argument("--edits", type=int, default=30, help="slider moves each")
    parser.add_argument("--routes", nargs="+", choices=ROUTES, default=["api"])
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    codes = named_codes(args.code)

    work = Path(tempfile.mkdtemp(prefix="fader-load-"))
    model = work / "model"
    settings = make_model(model, args.preset, args.image_size)
    editor = Editor(FaderNetwork.from_pretrained(model))
    detail = editor.model.config.default_detail
    photos = make_photos(work, args.clients)
    expected = expected_crops(editor, photos, args.edits, detail)
    report = {
        "clients": args.clients,
        "edits_each": args.edits,
        "cores": os.cpu_count(),
        "model": settings,
        "code": {name: revision_of(revision) for name, revision in codes.items()},
    }
    with serving() as servers:
        for code, revision in codes.items():
            tree = checkout(revision, work / "code" / code)
            command = [sys.executable, "app.py", "--model", str(model), "--host", "127.0.0.1"]
            servers[code] = Server(code, command, tree, server_env(), work)
        for route in args.routes:  # the trees one after the other on a route: same host load
            report[route] = {}
            for code, server in servers.items():
                summary, visits = asyncio.run(
                    load(server, route, str(model), photos, args.edits, detail)
                )
                report[route][code] = measured(summary, visits, expected)
                print(json.dumps({route: {code: report[route][code]}}), file=sys.stderr)
            report[route] |= ratios(report[route], next(iter(codes)))
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
