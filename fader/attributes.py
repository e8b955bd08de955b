"""A model's sliders as values: where they start, before and after a classifier reads a photo.

An attribute is binary (one value, 0 absent … 1 present) or has several values (a group: one
value per category, e.g. Hair = Black, Blond, Brown). Slider values are a dict of either kind:
`{"Smiling": 1.0, "Hair": {"Blond_Hair": 1.0, "Black_Hair": 0.0}}`, as
`FaderNetwork.slider_channels` reads them. Every surface that starts sliders (the editor, the
video editor, the webcam) reads these two functions, so they start alike; the trainer names a
classifier's columns and its swaps through them too (`flat_names`, `value_name`). A page's
sliders and an API's arguments hold one number per slider (`positions`, `from_positions`,
`positions_by_name`), checked finite and clamped to the model's range (`finite`, `clamp`).
"""

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fader.model import FaderConfig

SliderValues = dict[str, float | dict[str, float]]


def neutral_values(config: FaderConfig) -> SliderValues:
    """Slider values without a classifier: 0 for a binary attribute, the first value on for
    an attribute with several (as `FaderNetwork.slider_channels` reads a missing one)."""
    return {
        name: {c: float(i == 0) for i, c in enumerate(categories)}
        if (categories := config.categories_of(name))
        else 0.0
        for name in config.attributes
    }


def group_of(config: FaderConfig, category: str) -> str | None:
    """The several-valued attribute whose values include `category`, if any."""
    return next((name for name, values in config.categories.items() if category in values), None)


def values_read(config: FaderConfig, names: Sequence[str], read: Sequence[float]) -> SliderValues:
    """Slider values from a classifier's reading (`read[i]` of the classifier's attribute
    `names[i]`): a binary attribute takes its reading, a group the readings of its values (the
    one read as on; a video's share of frames for each); an attribute the classifier does not
    read, or a group none of whose values it reads as on, stays neutral."""
    start = neutral_values(config)
    groups: dict[str, dict[str, float]] = {}
    for name, value in zip(names, read, strict=True):
        group = group_of(config, name)
        if name in start:
            start[name] = value
        elif group is not None:
            groups.setdefault(group, dict.fromkeys(start[group], 0.0))[name] = float(value)
    for group, values in groups.items():
        if any(values.values()):
            start[group] = values
    return start


def with_values(
    config: FaderConfig, start: SliderValues, named: Mapping[str, float | str | dict]
) -> SliderValues:
    """`start` with the values `named` by a person: an attribute by its name (a number, or for
    a group the name of the value to switch on), or one value of a group by that value's name
    (`{"three": 1}` sets the Digit group's "three"), the group's other values kept from `start`.
    A ValueError names what the model has for anything else."""
    values = {name: dict(v) if isinstance(v, dict) else v for name, v in start.items()}
    for name, value in named.items():
        group = None if name in config.attributes else group_of(config, name)
        if group is not None:
            values[group] = {**values[group], name: float(value)}
        elif isinstance(value, dict) and name in config.categories:
            values[name] = {**values[name], **{k: float(v) for k, v in value.items()}}
        elif (categories := config.categories.get(name)) is not None:
            if value not in categories:
                raise ValueError(f"{name} is one of {', '.join(categories)}, not {value!r}.")
            values[name] = {c: float(c == value) for c in categories}
        elif name in config.attributes:
            values[name] = float(value)
        else:
            names = [*config.attributes, *(v for vs in config.categories.values() for v in vs)]
            raise ValueError(f"The model has no {name!r}; it has {', '.join(names)}.")
    return values


SliderKey = tuple[str, str | None]  # (attribute, its value for a slider group, else None)


def slider_keys(config: FaderConfig) -> list[SliderKey]:
    """One slider per binary attribute, one per value of an attribute with several (a group,
    such as hair colour: black, blond, brown, gray), in the decoder's channel order."""
    keys: list[SliderKey] = []
    for name in config.attributes:
        categories = config.categories.get(name)
        keys += [(name, c) for c in categories] if categories else [(name, None)]
    return keys


def slider_names(config: FaderConfig) -> list[str]:
    """Each slider's own name, in `slider_keys` order: a binary attribute's, or a group value's
    (`Smiling`, `Blond_Hair`); the names `flat_values` gives them."""
    return [category or name for name, category in slider_keys(config)]


def plain_words(attribute: str) -> str:
    """CelebA's `Wearing_Hat` → "Wearing hat"."""
    return attribute.replace("_", " ").capitalize()


def slider_label(key: SliderKey) -> str:
    name, category = key
    return (
        plain_words(name) if category is None else f"{plain_words(name)}: {plain_words(category)}"
    )


def api_name(key: SliderKey) -> str:
    """A slider's name for the API and MCP clients: `three`, `smiling`, `hair_blond_hair`."""
    return re.sub(r"[^a-z0-9]+", "_", "_".join(filter(None, key)).lower()).strip("_")


def flat_values(sliders: Mapping[str, float | Mapping[str, float]]) -> dict[str, float]:
    """`{"Smiling": 1, "Hair": {"Blond_Hair": 1}}` → `{"Smiling": 1, "Blond_Hair": 1}`."""
    flat: dict[str, float] = {}
    for name, value in sliders.items():
        flat |= dict(value) if isinstance(value, Mapping) else {name: value}
    return flat


def flat_names(config: FaderConfig) -> dict[str, list[str]]:
    """Each attribute's sliders by the names `flat_values` gives them, which are also the
    attributes a classifier reads: `{"Smiling": ["Smiling"], "Hair": ["Black_Hair", …]}`."""
    names: dict[str, list[str]] = {}
    for name, category in slider_keys(config):
        names.setdefault(name, []).append(category or name)
    return names


def value_name(config: FaderConfig, attribute: str, value: int) -> str:
    """An attribute's value (its label: 0 or 1 for a binary attribute, the place of a group's
    value) as a person names it to `with_values`: `1`, `Blond_Hair`."""
    categories = config.categories_of(attribute)
    return categories[value] if categories else str(value)


def positions(
    config: FaderConfig, values: Mapping[str, float | Mapping[str, float]]
) -> list[float]:
    """Slider values as one number per slider, in `slider_keys` order (as a page's sliders or
    an API's positional arguments hold them)."""
    flat = flat_values(values)
    return [flat[name] for name in slider_names(config)]


def from_positions(config: FaderConfig, numbers: Sequence[float]) -> SliderValues:
    """One number per slider (`slider_keys` order; missing ones left out) → slider values: a
    float per binary attribute, a dict of its values' numbers per group."""
    values: SliderValues = {}
    for (name, category), number in zip(slider_keys(config), numbers, strict=False):
        if category is None:
            values[name] = number
        else:
            values.setdefault(name, {})[category] = number  # type: ignore[index]
    return values


def positions_by_name(config: FaderConfig, values: Any, start: SliderValues) -> list[float]:
    """An object of attribute values by their API names (`{"eight": 1, "three": 0}`, any case;
    a group's value also by its own name, `{"blond_hair": 1}` for `hair_blond_hair`) as one
    number per slider; the sliders not named stay at `start`."""
    if not isinstance(values, dict):
        raise ValueError(
            'Give the attribute values as an object by name, such as {"three": 0, "eight": 1}.'
        )
    keys = slider_keys(config)
    aliases = {api_name((category, None)): i for i, (_, category) in enumerate(keys) if category}
    position = aliases | {api_name(key): i for i, key in enumerate(keys)}
    by_name = {api_name((str(name), None)): value for name, value in values.items()}
    unknown = [name for name in by_name if name not in position]
    if unknown:
        shortest = ", ".join(api_name((name, None)) for name in slider_names(config))
        raise ValueError(
            f"This model has no attribute {unknown[0][:40]!r}; its attributes are {shortest}."
        )
    numbers = positions(config, start)
    given = finite(list(by_name.values()), "Attribute values")
    for name, value in zip(by_name, given, strict=True):
        numbers[position[name]] = value
    return numbers


def finite(values: Sequence[float | None], what: str = "Slider values") -> list[float]:
    """`values` as floats (None, a value left out, as 0); a ValueError naming `what` for any
    that is not a finite number."""
    try:
        numbers = [0.0 if v is None else float(v) for v in values]
    except (TypeError, ValueError, OverflowError):  # Python's own message echoes the value
        raise ValueError(f"{what} must be finite numbers.") from None
    if not all(math.isfinite(v) for v in numbers):
        raise ValueError(f"{what} must be finite numbers.")
    return numbers


def clamp(value: float, ends: tuple[float, float]) -> float:
    """`value` moved to the nearer end of `ends` if past it: a number typed past a slider's end
    is taken as that end, by a page and an API alike."""
    return min(max(value, ends[0]), ends[1])
