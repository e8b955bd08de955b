"""The sliders as the page and the API send them: as many as the page has, their numbers
checked and clamped to the model's range, where they start for a photo, and the note when a
typed number was set to an end.

The values themselves (positions ↔ names ↔ groups) are the attribute schema's
(`fader.attributes`); this module adds the page's limits and its updates.
"""

import json
from collections.abc import Sequence
from typing import Any

import gradio as gr

from fader.attributes import (
    SliderKey,
    api_name,
    clamp,
    finite,
    from_positions,
    plain_words,
    positions,
    slider_label,
)
from fader.attributes import slider_keys as model_slider_keys
from fader.editor import Editor
from fader.library import ModelLibrary

MAX_SLIDERS = 16  # Gradio needs components up front; models with fewer hide the rest
DETAIL_RANGE = (0.0, 1.0)  # "keep photo detail": the model's output alone … the photo's detail


def slider_keys(editor: Editor) -> list[SliderKey]:
    """The model's sliders (`fader.attributes.slider_keys`), as many as the page has."""
    keys = model_slider_keys(editor.model.config)
    if len(keys) > MAX_SLIDERS:
        raise ValueError(f"This model needs {len(keys)} sliders; the app shows {MAX_SLIDERS}.")
    return keys


def slider_values(editor: Editor, model_name: str, values: Sequence[float]) -> dict:
    """The sliders' numbers as `editor` (the model `model_name`'s) takes them: a float per binary
    attribute, a dict of its values' numbers per slider group."""
    keys = slider_keys(editor)
    ends = editor.model.config.slider_range
    numbers = finite(values)
    if any(numbers[len(keys) :]):  # a list meant for another model, or shifted by one
        given = max(i for i, v in enumerate(numbers) if v) + 1
        raise ValueError(
            f"{model_name} takes {len(keys)} slider values ({', '.join(map(api_name, keys))}), "
            f"in that order; {given} were given. Leave the rest out (or 0), or use /edit_by_name."
        )
    return from_positions(editor.model.config, [clamp(n, ends) for n in numbers[: len(keys)]])


def detail_value(detail: float | None) -> float | None:
    """ "Keep photo detail" as a number in DETAIL_RANGE, None staying the model's default."""
    return None if detail is None else clamp(finite([detail], "Keep photo detail")[0], DETAIL_RANGE)


def typing(values: Sequence[float | None], options: dict[str, Any]) -> bool:
    """Whether a slider's number box holds no number yet (a "-" on the way to "-1"): the
    page's edits then leave the picture and the download as they are."""
    return None in values or ("detail" in options and options["detail"] is None)


def slider_settings(editor: Editor) -> list[dict[str, Any]]:
    """Labels, ranges and visibility of the fixed slider pool for the editor's model."""
    low, high = editor.model.config.slider_range
    keys = slider_keys(editor)
    return [
        {
            "visible": i < len(keys),
            "label": slider_label(keys[i]) if i < len(keys) else f"attribute {i}",
            "minimum": low,
            "maximum": high,
            "value": 0.0,
        }
        for i in range(MAX_SLIDERS)
    ]


def sweep_choices(editor: Editor) -> list[str]:
    """The sliders a sweep can run along, by their labels: every binary attribute and every
    value of a group (its other values kept)."""
    return [slider_label(key) for key in slider_keys(editor)]


def swept(editor: Editor, label: str) -> tuple[str, str]:
    """The slider a sweep's `label` names (a label of `sweep_choices`, or a binary attribute or
    a group's value in plain words, as the API takes it): its name for `Editor.sweep`, and its
    label for the strip."""
    for key in slider_keys(editor):
        name = key[1] or key[0]
        if label in (slider_label(key), plain_words(name), name):
            return name, slider_label(key)
    return label, label  # the editor names what the model has


def starting_sliders(
    library: ModelLibrary, model_name: str, photo_id: str, session: str = ""
) -> list:
    """Sliders at what the model's classifier reads from the photo (0 without one), or all at
    0 with no photo accepted (as the page was built), and the same numbers for the page's reset
    buttons (`reset_targets`), after an upload and for "Reset all" (`reset_all`); the note under
    the sliders emptied (`settle` keeps it only while a slider a visitor moved stays at an
    end)."""
    editor = library.editor(model_name)
    if photo_id:
        values = positions(editor.model.config, editor.photo(photo_id, session).slider_start)
    else:  # no photo accepted: as the page was built (`slider_settings`), before any photo
        values = [0.0] * len(slider_keys(editor))
    updates = [gr.update(value=v) for v in values] + [gr.update()] * (MAX_SLIDERS - len(values))
    return [*updates, reset_targets(values, editor.model.config.default_detail), ""]


def reset_all(library: ModelLibrary, model_name: str, photo_id: str, session: str = "") -> list:
    """ "Reset all": the sliders to the photo's start (`starting_sliders`) and "keep photo
    detail" to the model's default, so the picture is again what the upload first showed."""
    *sliders, targets, note = starting_sliders(library, model_name, photo_id, session)
    detail = library.editor(model_name).model.config.default_detail
    return [*sliders, gr.update(value=detail), targets, note]


def reset_targets(values: Sequence[float], detail: float) -> str:
    """Where each slider's reset button (↺) goes, as the page's script reads it: the photo's
    starting values and the model's detail, by the sliders' element ids. Gradio's own reset
    goes to the value the page was built with (0), which for a photo read as a three turned
    the three into a blob."""
    targets = {f"slider-{i}": v for i, v in enumerate(values)} | {"slider-detail": detail}
    return f"<div data-targets='{json.dumps(targets)}'></div>"


def settle(library: ModelLibrary, model_name: str, *values: float | None) -> list:
    """The page's sliders (then "keep photo detail") after a move: a number typed past an end
    is set to that end, which the edits already used (`clamp`), and a note under the sliders
    says so, kept while an attribute's slider stays at an end (setting the box changes it once
    more), and emptied by the next change within the ends; the others are left as they are."""
    editor = library.editor(model_name)
    keys = slider_keys(editor)
    ends = [editor.model.config.slider_range] * len(keys) + [DETAIL_RANGE]
    labels = [slider_label(key) for key in keys] + ["Keep photo detail"]
    at_an_end = any(value in ends[0] for value in values[: len(keys)])
    updates, notes = [], []
    shown = [*values[: len(keys)], values[-1]]  # the model's sliders and "keep photo detail"
    for value, slider_ends, label in zip(shown, ends, labels, strict=True):
        target = value if value is None else clamp(value, slider_ends)
        updates.append(gr.skip() if target == value else gr.update(value=target))
        if target != value:
            low, high = slider_ends
            notes.append(
                f"*{label}* runs from {low:g} to {high:g}: {value:g} is set to {target:g}."
            )
    unused = [gr.skip()] * (MAX_SLIDERS - len(keys))
    note = " ".join(notes) if notes else (gr.skip() if at_an_end else "")
    return [*updates[:-1], *unused, updates[-1], note]
