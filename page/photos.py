"""A photo into the page: encoded once (the example photos ahead of any click), what the page
says about it, the sliders' start and the faces found, and the photo found again for each edit.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from fader.align import faces_in
from fader.attributes import flat_values, plain_words
from fader.editor import MAX_FACES, Editor, PreparedPhoto, preview_of
from fader.heap import return_freed_memory
from fader.library import ModelLibrary
from fader.photo import load_photo
from fader.web_pictures import shown
from page.calls import markdown_text
from page.inputs import Photo, RejectedPhoto
from page.models import GET_A_FACE_MODEL

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"
# what the status says of a model that cannot read where a photo's sliders start
NO_CLASSIFIER = (
    "This model has no classifier to read the photo: its sliders start without each attribute"
    " (a group at its first value), not at what the photo shows."
)


def example_photos() -> dict[str, list[Path]]:
    """Photos in assets/examples/<kind>/, by kind ("digits", "faces"); their licences are in
    assets/examples/LICENSE.md."""
    suffixes = {".png", ".jpg", ".jpeg", ".webp"}
    kinds: dict[str, list[Path]] = {}
    for path in sorted(EXAMPLES.rglob("*")):
        if path.suffix.lower() in suffixes:
            kinds.setdefault(path.parent.name, []).append(path)
    return kinds


def encode_examples(library: ModelLibrary, model_name: str) -> None:
    """Encode the example photos ahead: a click then costs one decoder pass. The encodings are
    shared with whichever session clicks (as any photo two sessions upload). An example the
    model cannot take (a digit for a face model) says so when clicked."""
    editor = library.editor(model_name)
    for path in [p for paths in example_photos().values() for p in paths]:
        try:
            editor.load(path, session="examples")
        except ValueError:
            continue


def encode(
    library: ModelLibrary, model_name: str, image: Photo, session: str = ""
) -> tuple[Any, str, str]:
    """Align (for face models) and encode the photo once; return the crop the model sees, what
    the page says about it, and the photo's id ("" when refused: the message says why)."""
    editor = library.editor(model_name)  # an unknown model is refused whatever the photo
    if image is None:
        return None, "Upload a photo to start.", ""
    if isinstance(image, RejectedPhoto):
        return None, markdown_text(image.message), ""
    if not editor.aligns_faces and shows_a_face(image):
        return (
            None,
            f"This photo shows a face, but **{model_name}** does not edit faces. "
            + (GET_A_FACE_MODEL),
            "",
        )
    try:  # the prepared photo as loaded: other uploads may evict it before a read-back
        photo_id, prepared = editor.load_prepared(image, session)
    except ValueError as error:
        return None, markdown_text(str(error)), ""
    finally:
        return_freed_memory()  # the decoded upload's pages, back to the system
    how = f"Face aligned with {prepared.face.backend}." if prepared.face else "Centre square."
    read = [
        plain_words(name) for name, value in flat_values(prepared.slider_start).items() if value
    ]
    judged = (
        f"The classifier reads: {', '.join(read) or 'none'}."
        if editor.classifier
        else NO_CLASSIFIER
    )
    return shown(prepared.crop), " ".join(filter(None, [how, judged, prepared.note])), photo_id


def page_encode(library: ModelLibrary, model_name: str, image: Photo, session: str = "") -> tuple:
    """`encode` as the page shows it: a refused photo also clears the previous photo's edit and
    download in the same answer, where the steps after the encoding would clear them a second
    later (its download stayed beside the refusal). An accepted photo's replace them."""
    crop, note, photo_id = encode(library, model_name, image, session)
    if not photo_id:  # a slider move's export still queued for the last photo then skips
        library.editor(model_name).photos.show_none(session)
    return crop, note, photo_id, *(("", "", None) if not photo_id else (gr.skip(),) * 3)


def shows_a_face(photo: str) -> bool:
    """Whether a face can be seen in the photo (dlib's detector on a preview: offline, ~0.1 s)."""
    try:
        return bool(faces_in(preview_of(load_photo(photo)), 64, backend="dlib"))
    except ValueError:
        return False


def photo_for(
    editor: Editor, image: Photo, photo_id: str, session: str
) -> tuple[str, PreparedPhoto] | None:
    """The shown photo's valid id and its prepared photo: the cached latent, re-encoded only if
    it was evicted. None when no photo was accepted (nothing to edit, and nothing stale is
    edited)."""
    if isinstance(image, RejectedPhoto) or not photo_id:
        return None
    try:
        return photo_id, editor.photo(photo_id, session)
    except ValueError:
        if not image:
            raise ValueError(
                f"Photo {photo_id[:40]!r} is not loaded here (never encoded in this session, or "
                "no longer loaded): send the photo with it, or encode it again; /encode answers "
                "a new photo_id."
            ) from None
        return editor.load_prepared(image, session)


def face_labels(count: int) -> list[str]:
    return [f"Face {i + 1}{' (largest)' if i == 0 else ''}" for i in range(count)]


FACE_LABELS = face_labels(MAX_FACES)  # the "Faces to edit" choices the API and the page take


def face_choices(
    library: ModelLibrary, model_name: str, photo_id: str, session: str = ""
) -> tuple[Any, list[int]]:
    """The "Faces to edit" choice for the photo: every face found, all ticked; shown only when
    there is more than one. Also the ticked face numbers, which the page's Gradio events read."""
    editor = library.editor(model_name)
    count = len(editor.photo(photo_id, session).faces) if photo_id else 0
    labels = face_labels(count)
    return gr.update(choices=labels, value=labels, visible=count > 1), list(range(count))


def picked_faces(ticked: list[int]) -> list[int]:
    """The faces the visitor ticked, kept where the page's Gradio events read them
    (`app.Page.faces_ticked`)."""
    return ticked


def faces_present(prepared: PreparedPhoto, faces: Sequence[int] | None) -> Sequence[int] | str:
    """The ticked face numbers the photo has ("all" when none were sent, and for whole-image
    models, which have nothing to pick). The API's default ticks every label the page can show,
    more than most photos have."""
    count = len(prepared.faces)
    if faces is None or count == 0:
        return "all"
    return [i for i in faces if i < count]
