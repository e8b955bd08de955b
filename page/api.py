"""The API as scripts and MCP clients read it: each public endpoint's parameter names, its
description (Google style, as Gradio reads it for the API page and MCP) and examples that work
offline.
"""

import inspect
from collections.abc import Callable, Sequence

import gradio as gr
from gradio_client import handle_file

from fader.attributes import api_name, slider_label
from fader.editor import Editor
from fader.library import ModelLibrary
from page.photos import EXAMPLES, example_photos
from page.sliders import MAX_SLIDERS, slider_keys

PHOTO_ARGS = """    model_name: the model to edit with, one of the app's (its page lists them)
    photo: the photo (a file, URL or data: URL); may be left out when photo_id is given"""
EDIT_ARGS = (
    PHOTO_ARGS
    + """
    photo_id: the id /encode answered for this photo, in this client's session"""
)
CONTROL_ARGS = """    detail: keep photo detail: 0 the model's output alone, 1 the photo's detail
    faces: the faces to edit by label ("Face 1 (largest)", "Face 2"…); left out: every face"""
API_DOCS = {  # Google style, as Gradio reads it for the API page and MCP: an argument a line
    "encode": """Encode a photo once, so that its edits are fast: a face model finds and aligns
the face, other models take the centre square. Answers the crop the model sees, a note (what
was found, what the classifier reads) and the photo_id that the edits take.

Args:
{photo}""",
    "edit": """Edit an encoded photo with each slider's value, in the model's order of
attributes. Answers the edited crop, the edited photo (a preview, at most 768 pixels a side;
/export makes the full-resolution PNG) and the photo_id. A value past a slider's end is taken
as that end.

Args:
{edit}
{sliders}
{controls}""",
    "export": """The edit /edit makes, as a full-resolution PNG file named for its values.

Args:
{edit}
{sliders}
{controls}""",
    "edit_by_name": """Edit an encoded photo with attribute values by name, such as
{{"three": 0, "eight": 1}}: attributes not named stay at the photo's start (what the model's
classifier reads from it). Answers as /edit does.

Args:
{edit}
    values: attribute values by name ({names}): 0 without the attribute, 1 with it
{controls}""",
    "sweep": """One attribute from the slider's minimum to its maximum in a number of steps,
the other sliders as given: a strip of crops, a row per face, each column labelled.

Args:
{edit}
    attribute: the slider to sweep: "Smiling", or a group's value ("Digit: Eight", "eight")
    steps: how many values, 2 to 16
{sliders}
{controls}""",
}


def slider_args(editor: Editor, model_name: str) -> tuple[list[str], str]:
    """The sliders' parameter names and their "Args:" lines: named for the attributes of the
    first model, `model_name` (`editor`'s): each model takes its own, in its own order; the
    rest serve larger models."""
    keys = slider_keys(editor)
    low, high = editor.model.config.slider_range
    names = [api_name(key) for key in keys] + [f"slider_{i}" for i in range(len(keys), MAX_SLIDERS)]
    lines = [
        f"    {name}: {slider_label(key)}, {low:g} to {high:g}: 0 without it, 1 with it"
        for name, key in zip(names, keys, strict=False)
    ]
    lines += [f"    {name}: unused by {model_name} (0)" for name in names[len(keys) :]]
    return names, "\n".join(lines)


def api_docs(library: ModelLibrary) -> dict[str, tuple[list[str], str]]:
    """Each public endpoint's parameter names and description."""
    first = library.editor(library.names[0])
    sliders, lines = slider_args(first, library.names[0])
    edit = ["model_name", "photo", "photo_id"]
    names = {
        "encode": ["model_name", "photo"],
        "edit": [*edit, *sliders, "detail", "faces"],
        "export": [*edit, *sliders, "detail", "faces"],
        "edit_by_name": [*edit, "values", "detail", "faces"],
        "sweep": [*edit, "attribute", "steps", *sliders, "detail", "faces"],
    }
    attributes = [api_name(key) for key in slider_keys(first)]
    fill = {"photo": PHOTO_ARGS, "edit": EDIT_ARGS, "sliders": lines, "controls": CONTROL_ARGS}
    fill["names"] = ", ".join([*attributes[:3], "…"])
    return {name: (names[name], doc.format(**fill)) for name, doc in API_DOCS.items()}


def documented(handler: Callable, names: Sequence[str], doc: str) -> Callable:
    """`handler` (bound by `for_session`) as the API page and MCP clients describe it: its
    inputs called `names` (not param_0…) and `doc`, whose "Args:" describes each."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    request = inspect.Parameter("request", kind, annotation=gr.Request)
    # Every input may be left out: the photo when its id is given, the others have defaults.
    parameters = [request, *(inspect.Parameter(name, kind, default=None) for name in names)]
    handler.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    handler.__doc__ = doc
    return handler


def api_examples(
    library: ModelLibrary, photo: gr.Image, photo_id: gr.Textbox, values: gr.JSON
) -> None:
    """Examples the API page shows that work offline for the inputs `photo`, `photo_id` and
    `values` (/edit_by_name's): an example photo of the first model's kind (a path on the
    server's disk), attribute values by its names."""
    editor = library.editor(library.names[0])
    kinds = example_photos()
    photos = kinds.get("faces" if editor.aligns_faces else "digits") or [EXAMPLES / "photo.png"]
    photo.example_payload = lambda: handle_file(str(photos[0]))
    photo.example_value = lambda: str(photos[0])
    photo_id.example_payload = photo_id.example_value = lambda: "the id /encode answered"
    by_name = {api_name(key): float(i) for i, key in enumerate(slider_keys(editor)[:2])}
    values.example_payload = values.example_value = lambda: by_name
    values.api_info = lambda: {
        "type": "object",
        "additionalProperties": {"type": "number"},
        "description": "attribute values by name",
    }
