"""The page as a person uses it: real Chromium, real upload, a real slider drag.

Needs Debian's Chromium at /usr/bin/chromium (`.ci/run` installs it) and the `playwright`
package; Playwright's own browser download is never used.
"""

import base64
import io
import re
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skimage_data

from fader.library import ModelLibrary
from page import edits
from page.photos import EXAMPLES
from page.sliders import MAX_SLIDERS
from tests.builders import save_model
from tests.group_photo import changed, group_photo
from tests.legacy_checkpoints import random_autoencoder, save_like_torch_0_3
from tests.test_app import serve
from tests.test_model_list import Site, _Handler

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"
)


DESKTOP = {"width": 1400, "height": 1000}
PHONE = {"width": 390, "height": 844}


@contextmanager
def opened(url: str, viewport: dict = DESKTOP) -> Iterator["Page"]:  # noqa: F821 — lazy import
    """A page of the app in a fresh headless Chromium, closed afterwards."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport=viewport)
            page.goto(url, timeout=60_000)
            yield page
        finally:
            browser.close()


@pytest.fixture(scope="module")
def face_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ModelLibrary]]:
    model = save_model(tmp_path_factory.mktemp("model") / "face", "celeba", ["Smiling", "Male"])
    library = ModelLibrary([model], aligner="dlib")
    with serve(library) as url:
        yield url, library


@pytest.fixture(scope="module")
def page_url(face_app) -> str:
    return face_app[0]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("photos")
    paths = {"astronaut": folder / "astronaut.jpg", "coffee": folder / "coffee.jpg"}
    Image.fromarray(skimage_data.astronaut()).save(paths["astronaut"], quality=95)
    Image.fromarray(skimage_data.coffee()).save(paths["coffee"], quality=95)
    return paths


def upload_and_wait_for_the_edit(page, photo: Path) -> str:
    """Upload `photo` and return the edited crop's src once it shows."""
    page.get_by_text("Upload a photo, then slide attributes").wait_for(timeout=60_000)
    page.set_input_files("input[type=file]", str(photo))
    page.get_by_text("Face aligned with dlib").wait_for(timeout=60_000)
    edited = page.locator("#edited-crop img")
    edited.wait_for(timeout=60_000)
    page.locator("#download a").first.wait_for(timeout=60_000)
    return edited.get_attribute("src")


def drag(page, slider, start: float, end: float) -> None:
    box = slider.bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * start, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * end, y, steps=8)
    page.mouse.up()


def calls_sent(page, api_name: str) -> list[dict]:
    """Each call of the page's event `api_name` that the page sends from now on (the bodies of
    its posts to Gradio's queue), as the test goes."""
    fn_index = page.evaluate(
        "name => window.gradio_config.dependencies.find((d) => d.api_name === name).id", api_name
    )
    sent = []

    def seen(request) -> None:
        if request.method == "POST" and "/queue/join" in request.url:
            body = request.post_data_json
            if body.get("fn_index") == fn_index:
                sent.append(body)

    page.on("request", seen)
    return sent


def test_upload_then_drag_a_slider_changes_the_edited_face(page_url: str, tmp_path: Path):
    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(skimage_data.astronaut()).save(photo, quality=95)
    with opened(page_url) as page:
        page.get_by_text("Upload a photo, then slide attributes").wait_for(timeout=60_000)
        page.set_input_files("input[type=file]", str(photo))
        edited = page.locator("#edited-crop img")
        edited.wait_for(timeout=60_000)
        page.get_by_text("Face aligned with dlib").wait_for(timeout=30_000)
        before = edited.get_attribute("src")

        slider = page.locator("input[type=range]").first
        box = slider.bounding_box()
        assert box is not None
        y = box["y"] + box["height"] / 2
        page.mouse.move(box["x"] + box["width"] * 0.4, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.95, y, steps=8)
        page.mouse.up()
        page.wait_for_function(
            "before => document.querySelector('#edited-crop img').src !== before",
            arg=before,
            timeout=30_000,
        )
        assert page.locator("#edited-photo img").count() == 1
        final = float(page.locator("#slider-column input[type=number]").first.input_value())
        # The download follows the drag to where it ended, not to a value on the way.
        page.locator("#download").get_by_text(f"Smiling={final:g}").wait_for(timeout=30_000)
        name = page.locator("#download").inner_text()  # the extension in an element of its own
        assert re.search(rf"Smiling={final:g}\s*\.png", name), name
        page.screenshot(path=str(ARTIFACTS / "app.png"), full_page=True)


@pytest.fixture(scope="module")
def digits_page_url() -> Iterator[str]:
    from fader.library import bundled_models

    with serve(ModelLibrary(list(bundled_models()))) as url:
        yield url


def test_bundled_digits_model_starts_at_the_digit_it_reads(digits_page_url: str):
    three = EXAMPLES / "digits" / "three.png"
    with opened(digits_page_url) as page:
        page.get_by_text("does not edit faces").first.wait_for(timeout=60_000)
        page.set_input_files("input[type=file]", str(three))
        page.get_by_text("The classifier reads: Three").wait_for(timeout=60_000)
        numbers = page.locator("input[type=number]")
        page.wait_for_function(
            "() => [...document.querySelectorAll('input[type=number]')]"
            ".map(n => n.value).join(',').startsWith('0,0,0,1,0,0,0,0,0,0')",
            timeout=30_000,
        )
        assert [numbers.nth(i).input_value() for i in range(10)] == ["0"] * 3 + ["1"] + ["0"] * 6
        page.locator("#edited-crop img").wait_for(timeout=30_000)
        page.wait_for_timeout(500)  # the upload's own edit and download have answered
        assert page.locator(".toast-body").count() == 0, "no error on the way"
        page.screenshot(path=str(ARTIFACTS / "app-digits.png"), full_page=True)


def test_one_upload_runs_the_encoder_once(face_app, photos):
    url, library = face_app
    encoder = library.editor(library.names[0]).model.encoder
    calls: list[int] = []
    hook = encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        photo = photos["astronaut"].with_name("astronaut-once.jpg")
        Image.open(photos["astronaut"]).rotate(3).save(photo)  # content no one encoded yet
        with opened(url) as page:
            upload_and_wait_for_the_edit(page, photo)
            page.wait_for_timeout(1500)  # any second encode would have started by now
    finally:
        hook.remove()
    assert calls == [1]


def test_a_refused_upload_clears_the_edit_and_its_message_stays(page_url, photos):
    with opened(page_url) as page:
        upload_and_wait_for_the_edit(page, photos["astronaut"])
        page.set_input_files("input[type=file]", str(photos["coffee"]))
        status = page.locator("#status")
        status.get_by_text("No face found").wait_for(timeout=60_000)
        page.wait_for_function(
            "() => !document.querySelector('#edited-crop img')"
            " && !document.querySelector('#download a')",
            timeout=30_000,
        )
        assert page.locator(".toast-body").count() == 0, "the message is on the page, no toast"
        slider = page.locator("#slider-column input[type=range]").first
        drag(page, slider, 0.4, 0.9)
        page.wait_for_timeout(1500)
        assert page.locator("#edited-crop img").count() == 0, "nothing edits the old photo"
        assert "No face found" in status.inner_text()
        page.screenshot(path=str(ARTIFACTS / "app-refused.png"), full_page=True)


def test_arrow_keys_reach_the_preview_and_the_download(page_url, photos):
    with opened(page_url) as page:
        before = upload_and_wait_for_the_edit(page, photos["astronaut"])
        assert "fader-face-unchanged" in page.locator("#download").inner_text()
        slider = page.locator("#slider-column input[type=range]").first
        slider.focus()
        for _ in range(4):
            page.keyboard.press("ArrowRight")
        page.wait_for_function(
            "before => document.querySelector('#edited-crop img').src !== before",
            arg=before,
            timeout=30_000,
        )
        page.get_by_text("Smiling=0.2").wait_for(timeout=30_000)  # the new download's name

        def after(action, name: str) -> None:
            before = page.locator("#edited-crop img").get_attribute("src")
            action()
            page.wait_for_function(
                "before => document.querySelector('#edited-crop img').src !== before",
                arg=before,
                timeout=30_000,
            )
            page.locator("#download").get_by_text(name).wait_for(timeout=30_000)

        number = page.locator("#slider-column input[type=number]").first
        after(lambda: (number.fill("1.5"), number.press("Enter")), "Smiling=1.5")  # typed
        reset = page.locator("#slider-column button.reset-button").first
        after(reset.click, "unchanged")  # reset to 0


def settled(page) -> str:
    """The download's link once no later export replaces it (a slider's export answers 0.3 s
    after its move; a drag sends several)."""
    link = None
    for _ in range(60):
        current = page.locator("#download a").first.get_attribute("href")
        if current == link:
            return link
        link = current
        page.wait_for_timeout(1000)
    raise AssertionError("the download kept changing")


def test_in_a_group_photo_the_faces_ticked_are_the_ones_edited_without_an_error(face_app, tmp_path):
    url, library = face_app
    group = group_photo()
    path = tmp_path / "group.png"
    group.save(path)
    with opened(url) as page:
        page.get_by_text("Upload a photo, then slide attributes").wait_for(timeout=60_000)
        page.set_input_files("input[type=file]", str(path))
        page.get_by_text("2 faces found").wait_for(timeout=60_000)
        faces = page.get_by_label("Face 2", exact=True)
        faces.wait_for(timeout=30_000)
        drag(page, page.locator("#slider-column input[type=range]").first, 0.4, 0.95)
        page.locator("#download").get_by_text("Smiling=").wait_for(timeout=30_000)
        settled(page)
        shown = page.locator("#edited-photo img").get_attribute("src")
        download = page.locator("#download a").first.get_attribute("href")
        faces.uncheck()  # Grace Hopper, the larger face, is Face 1: the astronaut goes back
        page.wait_for_function(
            "([shown, download]) => document.querySelector('#edited-photo img').src !== shown"
            " && document.querySelector('#download a').href !== download",
            arg=[shown, download],
            timeout=30_000,
        )
        link = settled(page)
        assert page.locator(".toast-body").count() == 0, "no error on the way"
        exported = Image.open(io.BytesIO(page.request.get(link).body())).convert("RGB")
        page.get_by_label("Face 1 (largest)", exact=True).uncheck()  # no face left ticked
        page.locator("#slider-note").get_by_text("Pick at least one face").wait_for(timeout=30_000)
        page.wait_for_timeout(2_000)  # time for the download, were it made again
        assert page.locator("#download a").first.get_attribute("href") == link, "download kept"
        assert page.locator(".toast-body").count() == 0, "said under the sliders, not a badge"
    editor = library.editor(library.names[0])
    hopper, astronaut = (face.box for face in editor.photo(editor.load(group)).faces)
    assert changed(exported, group, hopper) > 5, "the ticked face is edited"
    assert changed(exported, group, astronaut) == 0, "the face not ticked is untouched"


def test_on_a_phone_the_edit_stays_in_view_while_a_slider_is_dragged(page_url, photos):
    with opened(page_url, PHONE) as page:
        upload_and_wait_for_the_edit(page, photos["astronaut"])
        slider = page.locator("#slider-column input[type=range]").nth(1)
        slider.evaluate("element => element.scrollIntoView({block: 'end'})")  # below the result
        page.wait_for_timeout(300)
        before = page.locator("#edited-crop img").get_attribute("src")
        drag(page, slider, 0.4, 0.95)
        page.wait_for_function(
            "before => document.querySelector('#edited-crop img').src !== before",
            arg=before,
            timeout=30_000,
        )
        crop = page.locator("#edited-crop img").bounding_box()
        assert crop is not None and crop["y"] >= 0 and crop["y"] + crop["height"] <= PHONE["height"]
        page.screenshot(path=str(ARTIFACTS / "app-phone.png"))
        labels = page.locator("#slider-column").get_by_text("-2", exact=True)
        assert labels.first.is_visible(), "the slider's end labels are shown"


def inline_picture(src: str) -> Image.Image:
    """The picture a `data:` URL carries."""
    header, _, data = src.partition(",")
    assert header.startswith("data:image/") and header.endswith(";base64"), header[:40]
    return Image.open(io.BytesIO(base64.b64decode(data)))


def shown_difference(painted: Image.Image, expected: Image.Image) -> float:
    """Mean difference per pixel between a screenshot and the picture it should show, at the
    best alignment (an element at a fractional position is captured one pixel larger)."""
    w, h = expected.size
    target = np.asarray(expected.convert("RGB"), int)
    shots = np.asarray(painted, int)
    return min(
        np.abs(shots[dy : dy + h, dx : dx + w] - target).mean()
        for dy in range(shots.shape[0] - h + 1)
        for dx in range(shots.shape[1] - w + 1)
    )


def test_the_crop_shown_inline_is_the_edit_for_the_sliders_values(face_app, photos):
    url, library = face_app
    name = library.names[0]
    with opened(url) as page:
        before = upload_and_wait_for_the_edit(page, photos["astronaut"])
        drag(page, page.locator("#slider-column input[type=range]").first, 0.4, 0.9)
        page.wait_for_function(
            "before => document.querySelector('#edited-crop img').src !== before",
            arg=before,
            timeout=30_000,
        )
        page.wait_for_timeout(1500)  # the release's edit, if any, has landed
        numbers = page.locator("#slider-column input[type=number]")
        smiling, male, detail = (float(numbers.nth(i).input_value()) for i in range(3))
        img = page.locator("#edited-crop img")
        sent = inline_picture(img.get_attribute("src"))
        painted = Image.open(io.BytesIO(img.screenshot())).convert("RGB")
    assert smiling > 1, "the drag moved the slider"
    editor = library.editor(name)
    photo_id = editor.load(photos["astronaut"], session="test")
    values = [smiling, male] + [0.0] * (MAX_SLIDERS - 2)
    expected, _, _ = edits.edit(
        library, name, None, photo_id, *values, detail=detail, session="test"
    )
    crop = editor.edit(photo_id, {"Smiling": smiling, "Male": male}, "test", detail=detail).crop
    assert sent.size == crop.size, "sent at the model's size, enlarged by the browser"
    assert np.array_equal(np.asarray(sent.convert("RGB")), np.asarray(crop)), "lossless"
    assert abs(painted.width - expected.width) <= 1, "enlarged by the same whole factor"
    assert shown_difference(painted, expected) < 5, "enlarged pixel for pixel (smoothed: ~20)"
    assert inline_picture(before).tobytes() != sent.tobytes(), "the drag changed the edit"


class SlowDownloads(_Handler):
    """The authors' site, sending each file in ten parts half a second apart."""

    def answer(self, body: bool) -> None:
        data = self.server.files[self.path.lstrip("/")]
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        part = len(data) // 10 + 1
        for start in range(0, len(data), part) if body else ():
            self.wfile.write(data[start : start + part])
            self.wfile.flush()
            time.sleep(0.5)


def test_choosing_the_authors_model_shows_its_download_in_the_page(tmp_path, monkeypatch):
    checkpoint = save_like_torch_0_3(random_autoencoder(), tmp_path / "eyeglasses.pth")
    site = Site({"eyeglasses.pth": checkpoint.read_bytes()})
    site.RequestHandlerClass = SlowDownloads
    threading.Thread(target=site.serve_forever, daemon=True).start()
    monkeypatch.setenv("FADER_AUTHORS_URL", site.url)
    monkeypatch.setenv("FADER_AUTHORS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FADER_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    scene = save_model(tmp_path / "scene", "center", ["day", "night"])
    size = f"{len(site.files['eyeglasses.pth']) / 1000:.1f}k B"
    try:
        with serve(ModelLibrary([scene, "authors: eyeglasses"])) as url, opened(url) as page:
            page.get_by_text("Upload a photo, then slide attributes").wait_for(timeout=60_000)
            switches = calls_sent(page, "switch_model")
            page.get_by_label("Model").click()
            page.get_by_role("option").filter(has_text="eyeglasses").click()
            bar = page.locator("#model-loading").get_by_text("eyeglasses.pth")
            bar.wait_for(timeout=30_000)
            box = bar.bounding_box()  # on the page, clear of the model's description
            assert box is not None and box["height"] > 5 and box["width"] > 50, box
            info = page.locator("#model-info").bounding_box()
            assert box["x"] + box["width"] <= info["x"] or box["y"] >= info["y"] + info["height"]
            loading = page.locator("#model-loading").bounding_box()
            assert page.locator("#model-loading").get_by_text(size).count(), "bytes of the total"
            page.screenshot(path=str(ARTIFACTS / "app-download.png"), full_page=True)
            page.get_by_text("edits faces").first.wait_for(timeout=60_000)
            assert "Eyeglasses" in page.locator("#model-info").inner_text()
            assert page.get_by_text("eyeglasses.pth").count() == 0, "the bar is gone when done"
            assert len(switches) == 1, "one switch for one choice"
            idle = page.locator("#model-loading").bounding_box()
            assert idle is None or idle["height"] < loading["height"] / 2, "and the room it took"
    finally:
        site.shutdown()
        site.server_close()
