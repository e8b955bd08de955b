"""A slider's box, its track, the edited picture and the download always tell the same value:
typed numbers past an end, text that is no number, and the reset buttons, in real Chromium.

Needs Debian's Chromium (see tests/test_browser.py)."""

from collections.abc import Callable, Iterator

import numpy as np
import pytest

from fader.attributes import flat_values, from_positions, neutral_values
from fader.library import ModelLibrary, bundled_models
from page.moves import MOVE_PATH
from page.photos import EXAMPLES
from tests.test_app import serve
from tests.test_browser import (
    ARTIFACTS,
    DESKTOP,
    PHONE,
    calls_sent,
    inline_picture,
    opened,
    pytestmark,  # noqa: F401 — skipped where Chromium is missing
)

THREE = EXAMPLES / "digits" / "three.png"
TIMEOUT = 30.0  # seconds a page gets to settle; no assert depends on how fast it does


@pytest.fixture(scope="module")
def digits() -> Iterator[tuple[str, ModelLibrary]]:
    library = ModelLibrary(list(bundled_models()))
    with serve(library) as url:
        yield url, library


def eventually(page, check: Callable[[], bool], what: str) -> None:
    """Wait until `check()` holds (the page answers in its own time), else fail saying `what`."""
    for _ in range(int(TIMEOUT * 4)):
        if check():
            return
        page.wait_for_timeout(250)
    raise AssertionError(f"never: {what}")


def uploaded_three(page) -> None:
    page.set_input_files("input[type=file]", str(THREE))
    page.get_by_text("The classifier reads: Three").wait_for(timeout=60_000)
    page.locator("#download").get_by_text("unchanged").wait_for(timeout=30_000)


def box(page, index: int):
    return page.locator(f"#slider-{index} input[type=number]")


class Agreement:
    """What the page shows for the digits' sliders, and what the model makes of those values."""

    def __init__(self, page, library: ModelLibrary):
        self.page, self.editor = page, library.editor("digits")
        self.photo_id = self.editor.load(THREE, session="test")
        self.names = list(flat_values(neutral_values(self.editor.model.config)))  # a slider each

    def values(self) -> list[str]:
        return [box(self.page, i).input_value() for i in range(10)]

    def tracks(self) -> list[str]:
        ranges = self.page.locator("#slider-column [id^=slider-] input[type=range]")
        return [ranges.nth(i).input_value() for i in range(10)]

    def expected_crop(self, values: dict[str, float]) -> np.ndarray:
        numbers = [values.get(name, 0.0) for name in self.names]
        sliders = from_positions(self.editor.model.config, numbers)
        detail = self.editor.model.config.default_detail  # the page's, untouched here
        crop = self.editor.edit(self.photo_id, sliders, "test", detail=detail).crop
        return np.asarray(crop.convert("RGB"))

    def shown_crop(self) -> np.ndarray | None:
        src = self.page.locator("#edited-crop img").get_attribute("src")
        return None if src is None else np.asarray(inline_picture(src).convert("RGB"))

    def all_at(self, values: dict[str, float], download: str) -> bool:
        """Box and track at `values` (others 0), the crop the model makes of them, and the
        download named `download`."""
        wanted = [values.get(name, 0.0) for name in self.names]
        shown = self.shown_crop()
        return (
            [float(v or "nan") for v in self.values()] == wanted
            and [float(v) for v in self.tracks()] == wanted
            and shown is not None
            and np.array_equal(shown, self.expected_crop(values))
            and f"fader-digits-{download}" in self.page.locator("#download").inner_text()
        )


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_typed_values_are_clamped_or_refused_and_box_track_picture_and_download_agree(
    digits, viewport
):
    url, library = digits
    with opened(url, viewport) as page:
        uploaded_three(page)
        page_state = Agreement(page, library)
        three = box(page, 3)
        for typed, value in [("7", 3.0), ("-5", -2.0), ("1e3", 3.0), ("0.5", 0.5)]:
            three.fill(typed)
            three.press("Tab")
            eventually(
                page,
                lambda value=value: page_state.all_at({"three": value}, f"three={value:g}"),
                f"{typed} shown everywhere as {value:g}",
            )
            if value != float(typed):
                said = f"runs from -2 to 3: {float(typed):g} is set to {value:g}"
                page.locator("#slider-note").get_by_text(said).wait_for(timeout=30_000)
            else:
                eventually(page, lambda: not page.locator("#slider-note").inner_text(), "no note")
        for leave in ["Tab", "Enter"]:  # a box with no number, left or entered
            three.click()
            three.press("Control+a")
            page.keyboard.type("--")  # no number: Playwright's fill() refuses it, a person may not
            three.press(leave)
            eventually(page, lambda: three.input_value() == "0.5", f"{leave}: the box at 0.5")
            page.wait_for_timeout(1000)  # an edit or download "--" set off would have landed
            assert page_state.all_at({"three": 0.5}, "three=0.5"), f"{leave}: all at 0.5"
        three.fill("0.8")
        three.press("Enter")  # entered, the box still focused: the number to put back now
        eventually(page, lambda: page_state.all_at({"three": 0.8}, "three=0.8"), "0.8 entered")
        three.press("Control+a")
        page.keyboard.type("--")
        three.press("Enter")
        eventually(page, lambda: three.input_value() == "0.8", "the box back at 0.8")
        page.wait_for_timeout(1000)
        assert page_state.all_at({"three": 0.8}, "three=0.8"), "all at the number last entered"
        assert page.locator(".toast-body").count() == 0, "no error on the way"
        page.screenshot(path=str(ARTIFACTS / f"sliders-typed-{viewport['width']}.png"))


def test_reset_goes_to_the_photos_starting_value_and_reset_all_resets_every_slider(digits):
    url, library = digits
    with opened(url) as page:
        uploaded_three(page)
        page_state = Agreement(page, library)
        start = {"three": 1.0}
        assert page_state.all_at(start, "unchanged")
        box(page, 3).fill("0")
        box(page, 3).press("Tab")
        eventually(page, lambda: page_state.all_at({}, "three=0"), "Three at 0, named so")
        page.locator("#slider-3 .reset-button").click()
        eventually(page, lambda: page_state.all_at(start, "unchanged"), "Three back at 1")
        box(page, 8).fill("1")
        box(page, 8).press("Tab")
        box(page, 3).fill("-1")
        box(page, 3).press("Tab")
        moved = {"three": -1.0, "eight": 1.0}
        eventually(page, lambda: page_state.all_at(moved, "three=-1_eight=1"), "both moved")
        detail = page.locator("#slider-detail input[type=number]")
        default = detail.input_value()
        detail.fill("0.5" if default != "0.5" else "0.25")
        detail.press("Tab")
        name = f"three=-1_eight=1_detail={float(detail.input_value()):g}"
        page.locator("#download").get_by_text(name).wait_for(timeout=30_000)  # named so
        page.locator("#reset-all").click()
        eventually(page, lambda: page_state.all_at(start, "unchanged"), "all back at the start")
        assert detail.input_value() == default, "the detail back at the model's default too"
        assert page.locator(".toast-body").count() == 0, "no error on the way"
        page.screenshot(path=str(ARTIFACTS / "sliders-reset.png"), full_page=True)


def test_a_click_into_the_model_list_and_out_or_a_refused_name_keeps_the_sliders(digits):
    url, library = digits
    with opened(url) as page:
        uploaded_three(page)
        page_state = Agreement(page, library)
        box(page, 3).fill("0")
        box(page, 3).press("Tab")
        eventually(page, lambda: page_state.all_at({}, "three=0"), "Three at 0, named so")
        switches = calls_sent(page, "switch_model")
        page.get_by_label("Model").click()  # the list opens, nothing is chosen
        page.get_by_role("option").first.wait_for(timeout=10_000)
        page.locator("h1").first.click()  # and closes
        page.wait_for_timeout(3_000)  # time for a switch, had one been sent, to reset them
        assert switches == [], "no switch sent"
        assert page_state.all_at({}, "three=0"), "the sliders where the visitor left them"
        model = page.get_by_label("Model")
        model.fill("alice/fader-smiling-male")  # refused: the page stays as it is
        model.press("Enter")
        page.locator("#model-loading").get_by_text("not one of this app's models").wait_for()
        page.wait_for_timeout(3_000)  # time for the page's photo, were it encoded again
        assert page_state.all_at({}, "three=0"), "the photo's sliders and edit kept"
        assert len(switches) <= 2, "the name, and at most the list set back (which changes nothing)"


def test_a_move_answered_after_reset_all_leaves_the_reset_shown(digits):
    """A slider's move whose answer comes after "Reset all" was pressed (the route slow, or the
    visitor quick) is older than the reset: the reset's edit, made in turn after it, is what
    the page ends on, and the old move's settled value (a number typed past an end) is not put
    back into its box."""
    url, library = digits
    with opened(url) as page:
        uploaded_three(page)
        page_state = Agreement(page, library)
        start = {"three": 1.0}
        held = []  # the first move's request, held until let go; later ones go on

        def hold_the_first(route) -> None:
            held.append(route) if not held else route.continue_()

        page.route(f"**{MOVE_PATH}", hold_the_first)
        box(page, 3).fill("5")  # past the end (3): its answer would set the box to 3
        box(page, 3).press("Tab")
        eventually(page, lambda: bool(held), "the move sent")
        page.locator("#reset-all").click()
        eventually(page, lambda: box(page, 3).input_value() == "1", "the sliders reset")
        with page.expect_response(lambda r: r.url.endswith(MOVE_PATH)) as late:
            held[0].continue_()
        assert "crop" in late.value.json(), "the move was made, and answered late"
        eventually(page, lambda: page_state.all_at(start, "unchanged"), "the reset shown")
        page.wait_for_timeout(1_000)  # time for anything else to come
        assert page_state.all_at(start, "unchanged"), "the reset's edit still shown"
