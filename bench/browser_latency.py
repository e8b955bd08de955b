"""What a person feels: mouse-up on a slider → the edited crop painted, in real Chromium.

Serves the app on 127.0.0.1 (the bundled digits model by default, or a random-weight 256² face
architecture with `--face`), uploads a photo, then drags a slider DRAGS times. For each drag the
page itself records mouse-up (a pointerup listener) and the moment the new crop is decoded and
painted (a MutationObserver on the crop's <img>, then `img.decode()` and the next animation
frame). Beside it, in the same run, the handler's own time for the same move (`app.edit` called
directly), so the difference is what the queue, the event stream, image encoding and the
browser cost. Prints one JSON object.

    python bench/browser_latency.py [--drags 20] [--face]
"""

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from skimage import data as skimage_data

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import app  # noqa: E402
from fader.model import CELEBA, FaderConfig, FaderNetwork  # noqa: E402
from fader.models import ModelLibrary, bundled_models  # noqa: E402
from tests.test_app import serve  # noqa: E402
from tests.test_browser import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402
from train.config import PRESETS  # noqa: E402

WATCH = """() => {
  window.painted = [];
  const record = () => requestAnimationFrame(() => window.painted.push(performance.now()));
  new MutationObserver(async () => {
    const img = document.querySelector('#edited-crop img');
    if (img) { try { await img.decode(); } catch (e) {} record(); }
  }).observe(document.querySelector('#edited-crop'), {subtree: true, attributes: true,
      attributeFilter: ['src'], childList: true});
  window.released = [];
  document.addEventListener('pointerup', () => window.released.push(performance.now()), true);
}"""


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
    felt, handler = [], []
    with serve(library) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url, timeout=60_000)
        page.locator("#slider-column input[type=range]").first.wait_for(timeout=60_000)
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
            page.evaluate("() => { window.painted = []; }")
            page.mouse.up()
            page.wait_for_function("() => window.painted.length > 0", timeout=30_000)
            page.wait_for_timeout(800)  # let the move's export and stragglers settle
            released, painted = page.evaluate("() => [window.released.at(-1), window.painted]")
            after = [t for t in painted if t >= released]
            if i and after:  # the first drag warms up
                felt.append(after[-1] - released)
        browser.close()
        editor = library.editor(library.names[0])
        photo_id = editor.load(photo, session="bench")
        values = [0.5] + [0.0] * (app.MAX_SLIDERS - 1)
        for _ in range(args.drags):
            start = time.perf_counter()
            app.edit(library, library.names[0], None, photo_id, *values, session="bench")
            handler.append(1000 * (time.perf_counter() - start))
    shutil.rmtree(work, ignore_errors=True)
    report = {
        "model": "256² paper-preset face architecture" if args.face else "bundled digits",
        "mouse_up_to_painted": summary(felt),
        "handler": summary(handler),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
