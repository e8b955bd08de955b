"""The page for a model: what it edits in a visitor's words, its sliders and sweep choices, its
example photos, and a model that cannot load answered in a line under the list.
"""

from typing import Any

import gradio as gr

from fader.attributes import plain_words
from fader.editor import Editor
from fader.environment import offline
from fader.library import ModelLibrary, bundled_models
from page.calls import markdown_text
from page.sliders import MAX_SLIDERS, slider_settings, sweep_choices

GET_A_FACE_MODEL = (
    "For faces, choose a face model in the list above, start the app with one "
    "(`python app.py --model alice/fader-smiling-male`, a Hub repo or a folder), convert the "
    "authors' (`python -m fader.authors male --out models/male`) or train one on "
    "CelebA (`python -m train --attrs Smiling Male`)."
)


EXAMPLE_KINDS = ("digits", "faces")  # assets/examples/<kind>/: offered with the models of a kind


def example_kind(editor: Editor) -> str:
    """Which example photos fit the editor's model: faces for a face model, else the digits."""
    return "faces" if editor.aligns_faces else "digits"


def only_bundled(library: ModelLibrary) -> bool:
    """Whether the app offers nothing beyond its bundled models, with no network to fetch one:
    the page then says why there is no face model."""
    return offline() and set(library.names) <= set(bundled_models())


def what_it_edits(config: Any) -> str:
    """The kind of picture a model was trained on, in words a visitor understands."""
    if config.aligns_faces:
        return "faces (found in the photo and aligned like CelebA)"
    if "mnist" in str(config.training.get("dataset", config.training.get("layout", ""))):
        return "handwritten digits (the photo's centre square)"
    return "whole pictures like the ones it was trained on (the photo's centre square)"


def model_description(library: ModelLibrary, model_name: str, editor: Editor) -> str:
    """What the model `model_name` (`editor`'s) edits, its attributes and its sliders' range."""
    config = editor.model.config
    low, high = config.slider_range
    names = ", ".join(
        f"{plain_words(a)} ({' … '.join(plain_words(v) for v in values[:: len(values) - 1])})"
        if (values := config.categories_of(a))
        else plain_words(a)
        for a in editor.attributes
    )
    lines = [
        f"**{model_name}** edits {what_it_edits(config)}, {config.image_size}×"
        f"{config.image_size}: {names}. Sliders run from {low:g} to {high:g}: 0 = without "
        "the attribute, 1 = with it." + ("" if config.aligns_faces else " It does not edit faces.")
    ]
    if only_bundled(library):
        lines.append(
            "No face model here: the app is offline with only its bundled models, and face "
            "models come from the Hub or the authors' site."
        )
    return "\n\n".join(lines)


def switch_model(library: ModelLibrary, model_name: str, current: str | None = None) -> list:
    """The page for another model: the list's choice, what it edits, its sweep choices and
    sliders, its examples, and a line under the list. A model that cannot load leaves the page
    on `current` and says why in that line (under the list, where the name was chosen: the
    status under the photo is the photo's), whole."""
    unchanged = [gr.update()] * (5 + MAX_SLIDERS + len(EXAMPLE_KINDS))
    if model_name == current:  # the list set back to it after a refused switch: nothing to do
        return [gr.update(), current, *unchanged, gr.update()]
    try:
        if model_name not in library.names:  # typed into the list
            raise ValueError(
                f"it is not one of this app's models ({', '.join(library.names)}). The app "
                f"offers the models it was started with: `python app.py --model {model_name}`."
            )
        editor = library.editor(model_name)
    except ValueError as error:
        if current is None:
            raise
        message = f"Could not load **{model_name}**: {error} The page stays on **{current}**."
        return [gr.update(value=current), current, *unchanged, markdown_text(message)]
    choices = sweep_choices(editor)
    sliders = [gr.update(**settings) for settings in slider_settings(editor)]
    info = model_description(library, model_name, editor)
    help_ = gr.update(visible=not editor.aligns_faces)  # how to get a face model, folded
    webcam = gr.update(visible=editor.aligns_faces)  # the live webcam follows faces
    sweep = gr.update(choices=choices, value=choices[0] if choices else None)
    detail = gr.update(value=editor.model.config.default_detail)
    kind = example_kind(editor)
    examples = [gr.update(visible=k == kind) for k in EXAMPLE_KINDS]
    return [
        gr.update(value=model_name), model_name, info, help_, sweep, *sliders, detail,
        *examples, webcam, "",
    ]  # fmt: skip
