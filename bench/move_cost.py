"""What a slider move costs the server, and how much of it is ours: the real app beside a null one.

Starts `python app.py` on 127.0.0.1 from each code tree asked for (`--code before=REV` checks
out a commit into a temporary folder with `git archive`; `.` is this working tree; a commit
from 895e28c on, where the page's handlers live in `page/`, which the handler-alone measure
calls), and a null
app: the same inputs and outputs on the same routes, whose handler only returns the pictures the
real app answered for that photo (Gradio's floor), once with Gradio's defaults and once with the
settings `app.main` gives Gradio (`app.GRADIO_SETTINGS`). Each makes N moves through both routes
a move can take:

- the page's live edit: what the page sends the server for a step of a slider's drag, outside
  the queue, answered with the crop and the preview inline: one POST to the app's own route
  (`/fader/move`, `page/moves.py`) or, for a commit before that route, two to Gradio's
  `/gradio_api/run/predict` (the edit, and the sliders' `settle` that the page's `change` sent
  beside it); the null app answers both ways, and an app's floor is the null app's the way that
  app takes;
- the API's `/edit` through Gradio's queue (gradio_client), answered with two picture files,
  which the client downloads.

For each it reports the server's CPU time per move (`/proc/PID/stat` before and after), its
share above the null app's on the same route ("ours"), the wall time, the decoder's own time on
the photo's faces (one thread, as the app runs it) and the server-bound moves per second (the
machine's cores over the CPU per move), each server's CPU per second while it waits for work,
and the handler's own CPU per move called in a process of its own, without a server (our
share, without Gradio's or the server's noise). Every server is started at once, but measured
with the others stopped (`servers.alone`; from run 13 on): the idle ones' loops inflated the
measured one's CPU. py-spy
samples every server throughout (when it is installed): the top functions by own samples and,
for the app, its own functions by inclusive share. Cases: the bundled digits model on its
example three (28²) and on the same digit at 900×900; the paper's 256² face model (random
weights) on Grace Hopper at 1024 px, at 4000×3000, and four of her at 1024 px (a group).

A run records a few hundred queued events, too few for Gradio's analytics summary (rebuilt after
every queued event over the last 10,000 by default) to show in the null app's figures: its cost
per queued event is also timed on its own, at Gradio's defaults and at the app's settings.
Prints one JSON object and writes it to `--out`.

    python bench/move_cost.py --code before=HEAD~1 --code after=. [--moves 40]
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
from PIL import Image
from servers import (
    MOVE_ROUTE,
    Server,
    add_code_option,
    alone,
    checkout,
    live_pictures,
    named_codes,
    revision_of,
    server_env,
    serving,
)
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fader.align import faces_in  # noqa: E402
from fader.attributes import from_positions, slider_keys  # noqa: E402
from fader.model import ALIGN, FaderConfig, FaderNetwork  # noqa: E402
from train.config import PRESETS  # noqa: E402

MAX_SLIDERS = 16
FACE_ATTRIBUTES = ["Smiling", "Male", "Eyeglasses"]
GRACE_HOPPER = ROOT / "assets" / "examples" / "faces" / "grace_hopper.jpg"
THREE = ROOT / "assets" / "examples" / "digits" / "three.png"
ROUTES = ("live", "api")  # the page's live edit (outside the queue), the API's /edit (queued)


# ---- The photos and models -------------------------------------------------------------------


def make_photos(folder: Path) -> dict[str, Path]:
    """The cases' photos, written once: the digit small and large, the face at three sizes."""
    three = Image.open(THREE).convert("RGB")
    face = Image.open(GRACE_HOPPER).convert("RGB")  # 512×600
    tall = face.resize((878, 1024), Image.Resampling.LANCZOS)
    big = Image.new("RGB", (4000, 3000), (96, 96, 104))
    big.paste(face.resize((2560, 3000), Image.Resampling.LANCZOS), (720, 0))
    group = Image.new("RGB", (1024, 1024))
    for i in range(4):
        group.paste(
            face.resize((512, 512), Image.Resampling.LANCZOS), (512 * (i % 2), 512 * (i // 2))
        )
    photos = {
        "digit_28": three,
        "digit_900": three.resize((900, 900), Image.Resampling.BICUBIC),
        "face_1024": tall,
        "face_4000x3000": big,
        "group_of_4_1024": group,
    }
    paths = {}
    for name, image in photos.items():
        paths[name] = folder / f"{name}.png"
        image.save(paths[name])
    return paths


def paper_model(folder: Path) -> Path:
    """The paper's 256² network (C16…C512, z 512×2×2), random weights: speed does not depend
    on training."""
    torch.manual_seed(0)
    settings = PRESETS["paper"]["model"]
    config = FaderConfig(attributes=FACE_ATTRIBUTES, preprocessing=ALIGN, **settings)
    FaderNetwork(config).save_pretrained(folder)
    return folder


def decode_ms(model: FaderNetwork, faces: int, repeats: int = 30) -> float:
    """The decoder alone on `faces` latents in one batch, one thread as the app runs it: CPU ms
    (the thread's, as the server's is CPU time: other processes' load does not count)."""
    torch.set_num_threads(1)
    model = model.eval().to(memory_format=torch.channels_last)
    latent = torch.randn(faces, *model.config.latent_shape)
    halfway = from_positions(model.config, [0.5] * len(slider_keys(model.config)))
    channels = model.slider_channels(halfway, batch_size=faces)
    seconds = []
    with torch.inference_mode():
        model.decode(latent, channels)
        for _ in range(repeats):
            start = time.thread_time()
            model.decode(latent, channels)
            seconds.append(time.thread_time() - start)
    return 1000 * statistics.median(seconds)


def analytics_ms(events: int, repeats: int = 10) -> float:
    """What Gradio's queue spends after an event when it rebuilds its analytics summary (a
    pandas table, `Queue.compute_analytics_summary`) over `events` recorded ones: ms, median.
    By default it does so after every queued event over the last 10,000; the app's settings
    (`app.GRADIO_SETTINGS`) once per 1,000 events over the last 1,000."""
    from types import SimpleNamespace

    from gradio.queueing import Queue

    records = [
        {"time": time.time(), "status": "success", "process_time": 0.05, "function": "edit"}
        | {"session_hash": f"visitor{i % 50}"}
        for i in range(events)
    ]
    queue = SimpleNamespace(
        events_recorded=0,
        event_count_at_last_cache=0,
        ANAYLTICS_CACHE_FREQUENCY=1,  # sic: Gradio's spelling
        events_recorded_per_fn={"edit": events},
        cached_event_analytics_summary={},
        _get_df=Queue._get_df,
    )
    seconds = []
    for _ in range(repeats):
        queue.events_recorded += 1
        start = time.process_time()
        Queue.compute_analytics_summary(queue, records)
        seconds.append(time.process_time() - start)
    return 1000 * statistics.median(seconds)


HANDLER = """
import json, sys, tempfile, time
from pathlib import Path
import torch
import app
from page.calls import pictures_as_files
from page.edits import edit
from fader.library import ModelLibrary

model, photo, moves, detail = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
torch.set_num_threads(1)
if sys.argv[5] == "opencv-threads":  # as the tree's `app.main` sets them
    import cv2
    cv2.setNumThreads(1)
library = ModelLibrary([model])
photo_id = library.editor(model).load(photo)
outputs = [type("Picture", (), {"format": f})() for f in ("png", "jpeg")] + [None]
api = pictures_as_files(edit, outputs, Path(tempfile.mkdtemp()))
routes = {"live": lambda v: edit(library, model, None, photo_id, *v, detail=detail,
                                     inline=True),
          "api": lambda v: api(library, model, None, photo_id, *v, detail=detail)}
cpu = {}
for route, move in routes.items():
    values = lambda i: [round(((i * 7) % 21) / 10 - 1, 2)] + [0.0] * 15
    move(values(-1))
    start = time.process_time()
    for i in range(moves):
        move(values(i))
    cpu[route] = round(1000 * (time.process_time() - start) / moves, 1)
print(json.dumps(cpu))
"""


def handler_ms(tree: Path, model: str, photo: Path, moves: int, detail: float) -> dict:
    """The move's own handler called in a process of its own, no server: CPU ms per move for
    the page's live edit and the API's edit (its pictures written as files), the same work as
    "ours" without Gradio's share or the server's noise."""
    opencv = "opencv-threads" if "cv2.setNumThreads" in (tree / "app.py").read_text() else "-"
    command = [sys.executable, "-c", HANDLER, model, str(photo), str(moves), str(detail), opencv]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FADER_OFFLINE": "1"}
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- The null app: Gradio's floor ------------------------------------------------------------


def serve_null(pictures: Path, port: int, tuned: bool) -> None:
    """The app's move routes with handlers that only return, for the photo id they are given,
    the pictures the real app answered for it (`pictures`, read once each): same inputs, same
    outputs, same routes, no work of ours."""
    if tuned:  # the app's settings of Gradio: its environment, its queue's idle polling
        sys.path.insert(0, str(ROOT))
        from app import GRADIO_SETTINGS
        from page.queue_pace import pace_queue

        os.environ.update(GRADIO_SETTINGS)
    import gradio as gr

    answers: dict[str, tuple] = {}
    cache: list = []  # a component, for Gradio's cache folder

    def answered(photo_id: str, route: str) -> tuple:
        key = f"{photo_id}-{route}"
        if key not in answers:
            saved = json.loads((pictures / f"{key}.json").read_text())
            if route == "api":  # the files, in Gradio's cache as the app writes its own
                folder = Path(tempfile.mkdtemp(dir=cache[0].GRADIO_CACHE))
                saved = [shutil.copy(path, folder) for path in saved]
            answers[key] = (*saved, photo_id)
        return answers[key]

    with gr.Blocks() as demo:
        model = gr.Dropdown(["model"], allow_custom_value=True)
        image = gr.Image(type="filepath", image_mode=None)
        photo_id = gr.Textbox()
        sliders = [gr.Slider(-5, 5) for _ in range(MAX_SLIDERS)]
        detail = gr.Slider(0, 1)
        labels = [f"Face {i + 1}" for i in range(16)]
        faces = gr.CheckboxGroup(labels, value=labels, type="index")
        ticked = gr.State()
        live_outputs = [gr.HTML(), gr.HTML(), photo_id]
        api_outputs = [gr.Image(format="png"), gr.Image(format="jpeg"), photo_id]
        cache.append(api_outputs[0])
        page_inputs = [model, image, photo_id, *sliders, detail, ticked]
        api_inputs = [model, image, photo_id, *sliders, detail, faces]

        def live(model_name, image, photo_id, *rest):
            return answered(photo_id, "live")

        def api(model_name, image, photo_id, *rest):
            return answered(photo_id, "api")

        gr.on([], live, page_inputs, live_outputs, api_name="live_edit", queue=False)
        settled = [*sliders, detail, gr.Markdown()]  # the sliders left as they are, no note
        settle = [model, *sliders, detail], settled
        gr.on(
            [],
            lambda *_: [gr.skip()] * len(sliders) + [gr.skip(), ""],
            *settle,
            api_name="settle",
            queue=False,
        )
        gr.on([], api, api_inputs, api_outputs, api_name="edit", concurrency_limit=None)

    async def own_route(request: Request) -> JSONResponse:  # the app's MOVE_ROUTE, null
        crop, photo, _ = answered(json.loads(await request.body())["photo_id"], "live")
        return JSONResponse({"crop": crop, "photo": photo})

    routes = [Route(f"/{MOVE_ROUTE}", own_route, methods=["POST"])]
    demo.queue(default_concurrency_limit=4)
    if tuned:
        pace_queue(demo)
    demo.launch(
        server_name="127.0.0.1", server_port=port, quiet=True, app_kwargs={"routes": routes}
    )


# ---- Moves -----------------------------------------------------------------------------------


def values_for(move: int) -> list[float]:
    """A drag: the first slider sweeping back and forth, the others at 0."""
    values = [0.0] * MAX_SLIDERS
    values[0] = round(((move * 7) % 21) / 10 - 1, 2)
    return values


IDLE_SECONDS = 5.0


def idle_cpu(server: Server) -> float:
    """The server's CPU per second with no request: what its loops cost while they wait."""
    start = server.cpu()
    time.sleep(IDLE_SECONDS)
    return round(1000 * (server.cpu() - start) / IDLE_SECONDS, 1)


def live_move(
    server: Server, session: str, model: str, photo_id: str, values, detail, own_route=None
) -> list[str]:
    """A step of a slider's drag as the page sends it (`Server.live_move_requests`, with
    `own_route`): the crop's and the preview's <img>s."""
    requests = server.live_move_requests(session, model, photo_id, values, detail, own_route)
    replies = [server.http.post(route, json=body) for route, body in requests]
    for reply in replies:
        reply.raise_for_status()
    return live_pictures(replies[0].json())


def measure(server: Server, route: str, moves: int, move) -> dict:
    """CPU per move and wall time of `moves` calls of `move(i)`, after two warm-up calls, with
    py-spy sampling the server meanwhile."""
    move(-1), move(-2)
    sampler = server.sample(route)
    time.sleep(1.0)  # py-spy attached
    start_cpu, seconds = server.cpu(), []
    for i in range(moves):
        start = time.perf_counter()
        move(i)
        seconds.append(time.perf_counter() - start)
    cpu_ms = 1000 * (server.cpu() - start_cpu) / moves
    if sampler is not None:
        sampler.send_signal(signal.SIGINT)
        sampler.wait(60)
    return {
        "server_cpu_ms": round(cpu_ms, 1),
        "wall_p50_ms": round(1000 * statistics.median(seconds), 1),
        "server_bound_moves_per_s": round(1000 * (os.cpu_count() or 1) / cpu_ms, 1),
    }


def drive_app(server: Server, model: str, photo: Path, moves: int, detail: float, keep: Path):
    """Both routes on the real app for one photo; the last answers of each kept in `keep` for
    the null app (under the photo's case name)."""
    from gradio_client import Client, handle_file

    client = Client(server.url, verbose=False)
    _, status, photo_id = client.predict(model, handle_file(str(photo)), api_name="/encode")
    if not photo_id:
        raise RuntimeError(f"{photo.name} was refused: {status}")
    session = client.session_hash
    live_answer, api_answer = {}, []

    def live(i: int) -> None:
        live_answer["data"] = live_move(server, session, model, photo_id, values_for(i), detail)

    def api(i: int) -> None:
        api_answer[:] = client.predict(
            model, None, photo_id, *values_for(i), detail, api_name="/edit"
        )[:2]

    result = {
        route: measure(server, route, moves, move)
        for route, move in zip(ROUTES, (live, api), strict=True)
    }
    (keep / f"{photo.stem}-live.json").write_text(json.dumps(live_answer["data"]))
    (keep / f"{photo.stem}-api.json").write_text(json.dumps(api_answer))
    return result


def drive_null(server: Server, case: str, moves: int) -> dict:
    from gradio_client import Client

    client = Client(server.url, verbose=False)
    values = [0.0] * MAX_SLIDERS

    def live(i: int) -> None:
        live_move(server, client.session_hash, "model", case, values, 0.0, own_route=False)

    def live_own(i: int) -> None:
        live_move(server, client.session_hash, "model", case, values, 0.0, own_route=True)

    def api(i: int) -> None:
        client.predict("model", None, case, *values, 0.0, api_name="/edit")

    moves_by_route = {"live": live, "live_own_route": live_own, "api": api}
    return {route: measure(server, route, moves, move) for route, move in moves_by_route.items()}


# ---- Profiles --------------------------------------------------------------------------------


IDLE = {"EpollSelector.select", "Condition.wait", "Event.wait", "Blocks.block_thread", "_worker"}
"""Where a server's threads wait for work: their samples are not busy ones."""


def top_functions(raws: list[Path], count: int = 12) -> dict:
    """py-spy's raw stacks folded by function, in % of the samples taken while the server was
    busy: the top by own samples (the frame running) and, for the project's own functions
    (fader/, app.py), by inclusive share (the frame anywhere on the stack)."""
    own, inclusive, total = Counter(), Counter(), 0
    lines = [line for raw in raws if raw.is_file() for line in raw.read_text().splitlines()]
    for line in lines:
        stack, _, samples = line.rpartition(" ")
        frames = [label(frame) for frame in stack.split(";") if " (" in frame]
        if not frames or not samples.isdigit() or frames[-1].split(" (")[0] in IDLE:
            continue
        total += int(samples)
        own[frames[-1]] += int(samples)
        for frame in {f for f in frames if f.endswith(("app.py)", "[fader])"))}:
            inclusive[frame] += int(samples)

    def shares(counter: Counter) -> dict:
        return {name: round(100 * n / max(total, 1), 1) for name, n in counter.most_common(count)}

    return {"busy_samples": total, "own": shares(own), "ours_inclusive": shares(inclusive)}


def label(frame: str) -> str:
    """A py-spy frame `function (path/file.py:line)` as `function (file.py)`, marked
    `[fader]` when it is the project's library."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    mark = " [fader]" if re.search(r"(^|/)fader/", path) else ""
    return f"{name} ({path.rsplit('/', 1)[-1]}{mark})"


# ---- The run ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_code_option(parser)
    parser.add_argument("--moves", type=int, default=40)
    parser.add_argument("--cases", nargs="+", help="a subset of the cases, by name")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "move_cost.json")
    parser.add_argument("--null-server", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tuned", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.null_server:
        return serve_null(args.null_server, args.port, args.tuned)
    codes = named_codes(args.code)

    work = Path(tempfile.mkdtemp(prefix="fader-move-cost-"))
    photos = make_photos(work)
    paper = paper_model(work / "paper")
    cases = {
        "digit_28": "digits",
        "digit_900": "digits",
        "face_1024": str(paper),
        "face_4000x3000": str(paper),
        "group_of_4_1024": str(paper),
    }
    cases = {name: cases[name] for name in args.cases or cases}
    models = {"digits": FaderNetwork.from_pretrained(ROOT / "assets" / "models" / "digits")}
    models[str(paper)] = FaderNetwork.from_pretrained(paper)
    faces = {
        name: len(faces_in(Image.open(photos[name]).convert("RGB"), 256, "dlib"))
        if models[model].config.aligns_faces
        else 1
        for name, model in cases.items()
    }
    report = {
        "moves": args.moves,
        "cores": os.cpu_count(),
        "code": {name: revision_of(rev) for name, rev in codes.items()},
        "cases": {},
        "profiles": {},
        "gradio_analytics_ms_per_queued_event": {
            "gradio_default": round(analytics_ms(10_000), 2),
            "app_settings": round(analytics_ms(1_000) / 1_000, 3),
        },
    }
    for name, model in cases.items():
        report["cases"][name] = {
            "faces": faces[name],
            "decode_ms": round(decode_ms(models[model], faces[name]), 1),
        }

    env = server_env()
    pictures = work / "pictures"
    pictures.mkdir()
    trees: dict[str, Path] = {}
    tuned: dict[str, bool] = {}  # whether a tree's app sets Gradio's settings: its floor
    with serving() as servers:
        for code, revision in codes.items():
            tree = checkout(revision, work / "code" / code)
            command = [sys.executable, "app.py", "--model", str(paper), "--host", "127.0.0.1"]
            servers[code] = Server(code, command, tree, env, work)
            trees[code] = tree
            tuned[code] = "GRADIO_SETTINGS" in (tree / "app.py").read_text()
        null = [sys.executable, str(Path(__file__).resolve()), "--null-server", str(pictures)]
        servers["null"] = Server("null", null, ROOT, env, work)
        servers["null_tuned"] = Server("null_tuned", [*null, "--tuned"], ROOT, env, work)
        time.sleep(IDLE_SECONDS)  # every server started, none busy
        report["idle_cpu_ms_per_s"] = {name: idle_cpu(server) for name, server in servers.items()}
        for name, model in cases.items():
            detail = models[model].config.default_detail
            row = report["cases"][name]
            running = servers.values()  # each measured with the others stopped
            for code in codes:
                with alone(running, servers[code]):
                    row[code] = drive_app(
                        servers[code], model, photos[name], args.moves, detail, pictures
                    )
                with alone(running):
                    row[code]["handler_cpu_ms"] = handler_ms(
                        trees[code], model, photos[name], args.moves, detail
                    )
            for null_name in ("null", "null_tuned"):
                with alone(running, servers[null_name]):
                    row[null_name] = drive_null(servers[null_name], name, args.moves)
            for code in codes:
                for route in ROUTES:
                    null = row["null_tuned" if tuned[code] else "null"]
                    own = route == "live" and servers[code].own_move_route
                    row[code][route]["route"] = MOVE_ROUTE if own else route
                    floor = null["live_own_route" if own else route]
                    ours_ms = row[code][route]["server_cpu_ms"] - floor["server_cpu_ms"]
                    row[code][route]["ours_ms"] = round(ours_ms, 1)
            print(json.dumps({name: row}), file=sys.stderr, flush=True)
    for name in servers:
        report["profiles"][name] = {
            route: top_functions(sorted(work.glob(f"{name}-{route}-*.raw")))
            for route in {*ROUTES, "live_own_route"}
            if any(work.glob(f"{name}-{route}-*.raw"))
        }
    text = json.dumps(report, indent=1)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
