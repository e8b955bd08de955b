"""The page's first screen, as a newcomer meets it offline in real Chromium: what the app can do
here and why, the upload box and the examples of the chosen model in view at desktop and phone
size, the result in view after an example, a typed model name answered in plain words.

Needs Debian's Chromium (see tests/test_browser.py)."""

from collections.abc import Iterator

import pytest

from fader.library import ModelLibrary, bundled_models
from tests.builders import save_model
from tests.test_app import serve
from tests.test_browser import (
    ARTIFACTS,
    PHONE,
    opened,
    pytestmark,  # noqa: F401 — skipped where Chromium is missing
)

FIRST_SCREEN = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def digits_url() -> Iterator[str]:
    with serve(ModelLibrary(list(bundled_models()))) as url:
        yield url


def in_view(page, selector: str, viewport: dict) -> bool:
    box = page.locator(selector).first.bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"]


@pytest.mark.parametrize("viewport", [FIRST_SCREEN, PHONE], ids=["desktop", "phone"])
def test_offline_the_first_screen_says_why_only_digits_and_holds_upload_and_examples(
    digits_url, viewport
):
    with opened(digits_url, viewport) as page:
        page.get_by_text("No face model here: the app is offline").wait_for(timeout=60_000)
        page.locator("#examples-digits img").first.wait_for(timeout=30_000)
        help_ = page.locator("#face-help")
        assert help_.is_visible() and "python -m train" not in help_.inner_text(), "folded"
        assert in_view(page, "#photo", viewport), "the upload box"
        assert in_view(page, "#examples-digits img", viewport), "the first example"
        assert not page.locator("#examples-faces").is_visible(), "no face examples for digits"
        assert not page.locator("#live-webcam").is_visible(), "the live webcam follows faces"
        if viewport == PHONE:
            assert not page.locator("#edited-crop").is_visible(), "no empty boxes above"
        page.screenshot(path=str(ARTIFACTS / f"first-screen-{viewport['width']}.png"))
        page.locator("#examples-digits img").nth(3).click()  # the three
        page.get_by_text("The classifier reads: Three").wait_for(timeout=60_000)
        page.locator("#edited-crop img").wait_for(timeout=30_000)
        assert in_view(page, "#edited-crop img", viewport), "the result after an example"
        page.screenshot(path=str(ARTIFACTS / f"first-example-{viewport['width']}.png"))


def test_a_model_name_typed_into_the_list_is_answered_in_plain_words(digits_url):
    with opened(digits_url, FIRST_SCREEN) as page:
        page.get_by_text("No face model here").wait_for(timeout=60_000)
        model = page.get_by_label("Model")
        model.fill("alice/fader-smiling-male")
        model.press("Enter")
        said = page.locator("#model-loading")  # under the list
        said.get_by_text("is not one of this app's models").wait_for(timeout=30_000)
        assert "python app.py --model alice/fader-smiling-male" in said.inner_text()
        assert "page stays on digits" in said.inner_text()
        assert page.locator(".toast-body").count() == 0


def test_the_examples_and_the_live_webcam_follow_the_chosen_model(tmp_path):
    face = save_model(tmp_path / "face", "celeba", ["Smiling", "Male"])
    library = ModelLibrary([face, *bundled_models()], aligner="dlib")
    with serve(library) as url, opened(url, FIRST_SCREEN) as page:
        page.locator("#examples-faces img").first.wait_for(timeout=60_000)
        assert not page.locator("#examples-digits").is_visible()
        assert not page.locator("#face-help").is_visible(), "a face model needs no such help"
        assert page.locator("#live-webcam").is_visible()
        page.get_by_label("Model").click()
        page.get_by_role("option").filter(has_text="digits").click()
        page.locator("#examples-digits img").first.wait_for(timeout=60_000)
        assert not page.locator("#examples-faces").is_visible()
        assert page.locator("#face-help").is_visible()
        assert not page.locator("#live-webcam").is_visible()
