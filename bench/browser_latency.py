"""What a person feels: mouse-up on a slider → the edited crop painted, in real Chromium.

Serves the app on 127.0.0.1 (the bundled digits model by default, or a random-weight 256² face
architecture with `--face`), uploads a photo, then drags a slider DRAGS times. For each drag the
page itself records mouse-up (a pointerup listener) and the moment the crop for the slider's
final value is first decoded and painted (a MutationObserver on the crop's <img>, then
`img.decode()` and the next animation frame; later repaints of the same picture are reported
apart, as `mouse_up_to_last_repaint`), and, between them, the page's own timeline of the edit
that brought it: its request sent and answered (`queue/join`, or the one POST of an event
outside the queue), the event stream's `process_starts` and `process_completed` messages
(Gradio's front end reads them through `fetch`, wrapped here before the page loads), the <img>
given its new src, the image file fetched (Resource Timing; nothing when the crop comes inline
as a data: URL), decoded and painted. Each part's p50 and mean are reported.
Beside it, in the same run, the handler's own time for the same move (`page.edits.edit` called
directly), so the difference is what the queue, the event stream, image encoding and the
browser cost. Prints one JSON object.

    python bench/browser_latency.py [--drags 20] [--face]
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

import torch
from PIL import Image
from skimage import data as skimage_data

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fader.library import ModelLibrary, bundled_models  # noqa: E402
from fader.model import CELEBA, FaderConfig, FaderNetwork  # noqa: E402
from page.edits import edit  # noqa: E402
from page.sliders import MAX_SLIDERS  # noqa: E402
from tests.test_app import serve  # noqa: E402
from tests.test_browser import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402
from train.config import PRESETS  # noqa: E402

# Before the page's own scripts: every queue/join (its fn_index, sent, answered, event_id) and
# every event-stream message (its event_id and kind, when its bytes arrived).
TIMELINE = """
window.joins = {};
window.messages = [];
const plainFetch = window.fetch;
const stamped = (body) => {
  const text = new TextDecoder();
  let pending = '';
  return body.pipeThrough(new TransformStream({
    transform(chunk, out) {
      const t = performance.now();
      pending += text.decode(chunk, {stream: true});
      const parts = pending.split('\\n\\n');
      pending = parts.pop();
      for (const part of parts) {
        try {
          const m = JSON.parse(part.replace(/^data: ?/, ''));
          window.messages.push({event_id: m.event_id, msg: m.msg, t});
        } catch (e) {}
      }
      out.enqueue(chunk);
    }
  }));
};
window.fetch = async function (input, init) {
  const url = typeof input === 'string' ? input : input.url;
  const sent = performance.now();
  const response = await plainFetch.apply(this, arguments);
  const answered = performance.now();
  const body = () => JSON.parse((init && init.body) || '{}');
  if (url.includes('/queue/join')) {
    const fn = body().fn_index;
    response.clone().json().then(r => { window.joins[r.event_id] = {fn, sent, answered}; })
      .catch(() => {});
  } else if (url.includes('/gradio_api/run/') || url.includes('/fader/move')) {
    // an event outside the queue, or a slider's move on the app's own route: one POST
    const id = 'direct-' + sent;
    const fn = url.includes('/fader/move') ? 'move' : body().fn_index;
    window.joins[id] = {fn, sent, answered: sent};
    window.messages.push({event_id: id, msg: 'process_starts', t: sent});
    window.messages.push({event_id: id, msg: 'process_completed', t: answered});
  } else if (url.includes('/queue/data') && response.body) {
    return new Response(stamped(response.body),
                        {status: response.status, statusText: response.statusText,
                         headers: response.headers});
  }
  return response;
};
"""

WATCH = """() => {
  window.painted = [];
  const record = (entry) => requestAnimationFrame(() => {
    entry.painted = performance.now(); window.painted.push(entry);
  });
  new MutationObserver(async () => {
    const img = document.querySelector('#edited-crop img');
    if (!img) return;
    const entry = {src: img.src, set: performance.now()};
    try { await img.decode(); } catch (e) {}
    entry.decoded = performance.now();
    record(entry);
  }).observe(document.querySelector('#edited-crop'), {subtree: true, attributes: true,
      attributeFilter: ['src'], childList: true});
  window.released = [];
  document.querySelector('#slider-column').addEventListener('input',
      () => { window.moved = performance.now(); }, true);
  document.addEventListener('pointerup', () => window.released.push(performance.now()), true);
}"""

# The parts of one move, in the order they happen; each is the time since the previous mark.
PARTS = {
    "waiting_to_send": "until the edit's request is sent (the page holds an event while the "
    "previous one of the same kind runs: trigger_mode always_last)",
    "join": "queue/join answered (0 for an event outside the queue)",
    "queue": "until process_starts arrives on the event stream (0 outside the queue)",
    "handler_and_outputs": "until the result arrives: process_completed on the event stream, or "
    "the answer to the one POST of an event outside the queue (preprocess, handler, "
    "postprocess, transfer)",
    "front_end": "until the <img> gets its new src",
    "image_fetch": "the image file fetched (0 for an inline data: URL)",
    "decode": "the <img> decoded",
    "paint": "the next animation frame",
}


def summary(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {
        "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 1),
        "min_ms": round(ms[0], 1),
        "n": len(ms),
    }


def face_model(folder: Path) -> str:
    torch.manual_seed(0)
    settings = PRESETS["paper"]["model"]
    FaderNetwork(
        FaderConfig(["Smiling", "Male"], preprocessing=CELEBA, **settings)
    ).save_pretrained(folder)
    return str(folder)


def edit_fn_indices(page) -> set[int | str]:
    """The dependency ids of the edit's events (the page's config names them), and "move" for
    the app's own route of a slider's move."""
    dependencies = page.evaluate("() => window.gradio_config.dependencies")
    return {"move"} | {
        d["id"]
        for d in dependencies
        if d.get("api_name") in {"edit", "live_edit"} or str(d.get("api_name")).startswith("edit_")
    }


def first_final_paint(painted: list[dict], moved: float) -> dict | None:
    """The first paint, after the slider took its last value, of the crop shown at the end (the
    same picture has the same src, a content-addressed file or the same data: URL); later
    repaints of the same picture are not felt."""
    if not painted:
        return None
    final = painted[-1]["src"]
    return next(p for p in painted if p["src"] == final and p["painted"] >= moved)


def breakdown(released: float, paint: dict, joins: dict, messages: list, fetches: dict):
    """The parts of mouse-up → `paint`, following the edit event that brought its crop (the last
    one completed before the <img> got its src). Marks before mouse-up count from mouse-up, so
    the parts add up to the felt time."""
    completed = {m["event_id"]: m["t"] for m in messages if m["msg"] == "process_completed"}
    starts = {m["event_id"]: m["t"] for m in messages if m["msg"] == "process_starts"}
    done = [(completed[e], e) for e in joins if e in completed and completed[e] <= paint["set"]]
    if not done:
        return None
    _, event = max(done)
    join = joins[event]
    fetched = fetches.get(paint["src"], paint["set"])
    marks = [
        join["sent"],
        join["answered"],
        starts.get(event, join["answered"]),
        completed[event],
        paint["set"],
        max(fetched, paint["set"]),
        paint["decoded"],
        paint["painted"],
    ]
    marks = [released] + [max(mark, released) for mark in marks]
    return {part: marks[i + 1] - marks[i] for i, part in enumerate(PARTS)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drags", type=int, default=20)
    parser.add_argument("--face", action="store_true", help="a 256² face architecture")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    torch.set_num_threads(1)  # as app.py runs on 2 cores
    work = Path(tempfile.mkdtemp(prefix="fader-latency-"))
    if args.face:
        model = face_model(work / "face")
        photo = work / "astronaut.jpg"
        Image.fromarray(skimage_data.astronaut()).save(photo, quality=95)
    else:
        model = "digits"
        photo = ROOT / "assets" / "examples" / "digits" / "three.png"
    library = ModelLibrary([model] if args.face else list(bundled_models()), aligner="dlib")
    felt, last_paint, handler, parts = [], [], [], {part: [] for part in PARTS}
    # Gradio's shutdown prints to stdout, which holds only the JSON report.
    with redirect_stdout(sys.stderr), serve(library) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.add_init_script(TIMELINE)
        page.goto(url, timeout=60_000)
        page.locator("#slider-column input[type=range]").first.wait_for(timeout=60_000)
        edits = edit_fn_indices(page)
        page.set_input_files("input[type=file]", str(photo))
        page.locator("#edited-crop img").wait_for(timeout=60_000)
        page.locator("#download a").first.wait_for(timeout=60_000)
        page.wait_for_timeout(1000)
        page.evaluate(WATCH)
        slider = page.locator("#slider-column input[type=range]").first
        box = slider.bounding_box()
        y = box["y"] + box["height"] / 2
        for i in range(args.drags + 1):
            start, end = (0.45, 0.75) if i % 2 else (0.75, 0.45)
            page.mouse.move(box["x"] + box["width"] * start, y)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * end, y, steps=4)
            page.evaluate("() => { window.painted = []; performance.clearResourceTimings(); }")
            page.mouse.up()
            page.wait_for_function("() => window.painted.length > 0", timeout=30_000)
            page.wait_for_timeout(800)  # let the move's export and stragglers settle
            released, moved, painted, joins, messages, fetches = page.evaluate(
                """() => [window.released.at(-1), window.moved, window.painted, window.joins,
                window.messages, Object.fromEntries(performance.getEntriesByType('resource')
                    .map(e => [e.name, e.responseEnd]))]"""
            )
            paint = first_final_paint(painted, moved)
            if i == 0 or paint is None:  # the first drag warms up
                continue
            felt.append(max(0.0, paint["painted"] - released))
            last_paint.append(max(0.0, painted[-1]["painted"] - released))
            edit_joins = {e: j for e, j in joins.items() if j["fn"] in edits}
            for part, ms in (
                breakdown(released, paint, edit_joins, messages, fetches) or {}
            ).items():
                parts[part].append(ms)
        browser.close()
        editor = library.editor(library.names[0])
        photo_id = editor.load(photo, session="bench")
        values = [0.5] + [0.0] * (MAX_SLIDERS - 1)
        for _ in range(args.drags):
            start = time.perf_counter()
            edit(library, library.names[0], None, photo_id, *values, session="bench")
            handler.append(1000 * (time.perf_counter() - start))
    shutil.rmtree(work, ignore_errors=True)
    report = {
        "model": "256² paper-preset face architecture" if args.face else "bundled digits",
        "mouse_up_to_painted": summary(felt),
        "mouse_up_to_last_repaint": summary(last_paint),
        "breakdown_p50_ms": {
            part: round(statistics.median(ms), 1) if ms else None for part, ms in parts.items()
        },
        # means add up: to the mean of mouse_up_to_painted over the drags followed
        "breakdown_mean_ms": {
            part: round(statistics.fmean(ms), 1) if ms else None for part, ms in parts.items()
        },
        "mean_felt_ms": round(statistics.fmean(felt), 1),
        "breakdown_parts": PARTS,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "handler": summary(handler),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
