"""The page's edit of a photo the server let go (`page.edits.edit_again`), with the photo
itself: prepared again and edited, unless the page was given another photo, or none, while it
was prepared (its answer would put the old photo back under the page)."""

import pytest

from fader.library import ModelLibrary, bundled_models
from page.edits import edit_again
from page.photos import EXAMPLES
from page.sliders import MAX_SLIDERS

THREE, SEVEN = EXAMPLES / "digits" / "three.png", EXAMPLES / "digits" / "seven.png"
SLIDERS = [0.0] * MAX_SLIDERS


@pytest.fixture
def let_go() -> tuple[ModelLibrary, str, str]:
    """A library whose session "page" had the three, let go since: its old id."""
    library = ModelLibrary(list(bundled_models()))
    name = library.names[0]
    photos = library.editor(name).photos
    old_id = library.editor(name).load(THREE, session="page")
    photos.discard("page", old_id)
    return library, name, old_id


def prepared_again_while(library: ModelLibrary, name: str, meanwhile) -> None:
    """`meanwhile()` runs while the editor prepares the photo again (its next preparation)."""
    editor = library.editor(name)

    def with_meanwhile(*args, **kwargs):
        del editor.load_prepared  # the class's own again, for `meanwhile` and after
        meanwhile()
        return editor.load_prepared(*args, **kwargs)

    editor.load_prepared = with_meanwhile


def test_the_photo_is_prepared_again_and_edited_under_a_new_id(let_go):
    library, name, old_id = let_go
    crop, preview, photo_id = edit_again(
        library, name, str(THREE), old_id, *SLIDERS, session="page"
    )
    assert photo_id not in ("", old_id) and crop.startswith("<img") and preview.startswith("<img")
    assert library.editor(name).photos.latest("page") == photo_id


@pytest.mark.parametrize("given", ["another photo", "no photo"])
def test_a_page_given_another_photo_or_none_meanwhile_is_left_as_it_is(let_go, given):
    library, name, old_id = let_go
    photos = library.editor(name).photos
    shown = []

    def meanwhile():
        if given == "another photo":
            shown.append(library.editor(name).load(SEVEN, session="page"))
        else:
            photos.show_none("page")  # an upload refused

    prepared_again_while(library, name, meanwhile)
    answer = edit_again(library, name, str(THREE), old_id, *SLIDERS, session="page")
    assert all(part == {"__type__": "update"} for part in answer), "nothing changes"
    assert photos.latest("page") == (shown[0] if shown else None), "the page's photo, or none"
    assert len(photos) == len(shown), "the old photo, prepared for nothing, let go again"


def test_a_box_with_no_number_yet_waits_without_preparing(let_go):
    library, name, old_id = let_go
    typing = [None, *SLIDERS[1:]]  # "-" typed, no number yet
    answer = edit_again(library, name, str(THREE), old_id, *typing, session="page")
    assert all(part == {"__type__": "update"} for part in answer)
    assert len(library.editor(name).photos) == 0, "nothing prepared"
