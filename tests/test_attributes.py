"""The attribute schema (`fader.attributes`) as the trainer reads it: a binary attribute and
one with several values named through the same functions the surfaces use."""

from fader.attributes import (
    flat_names,
    flat_values,
    neutral_values,
    slider_keys,
    value_name,
    values_read,
)
from fader.model import FaderConfig
from train.critics import classifier_columns, classifier_config

HAIR = ["Black_Hair", "Blond_Hair", "Brown_Hair"]
CONFIG = FaderConfig(attributes=["Smiling", "Hair"], categories={"Hair": HAIR})


def test_each_attribute_is_named_by_its_sliders_as_flat_values_name_them():
    assert flat_names(CONFIG) == {"Smiling": ["Smiling"], "Hair": HAIR}
    flattened = [name for names in flat_names(CONFIG).values() for name in names]
    assert flattened == list(flat_values(neutral_values(CONFIG)))
    assert len(flattened) == len(slider_keys(CONFIG))


def test_a_value_is_named_as_a_person_sets_it():
    assert [value_name(CONFIG, "Smiling", v) for v in (0, 1)] == ["0", "1"]
    assert [value_name(CONFIG, "Hair", v) for v in range(3)] == HAIR


def test_the_classifier_discriminator_reads_one_column_per_slider():
    assert classifier_config(CONFIG).attributes == ["Smiling", *HAIR]
    read = ["Blond_Hair", "Smiling", "Black_Hair", "Brown_Hair", "Male"]
    assert classifier_columns(read, CONFIG) == [[1], [2, 0, 3]]


def test_a_group_starts_at_the_value_the_classifier_reads_wherever_it_stands_in_its_order():
    """Every value of the group is read: the one read as on sets the group's start, even when
    values the classifier reads after it are off (it used to keep only the last one read)."""
    names = ["Black_Hair", "Blond_Hair", "Brown_Hair", "Smiling"]
    start = values_read(CONFIG, names, [0.0, 1.0, 0.0, 1.0])
    assert start == {
        "Smiling": 1.0,
        "Hair": {"Black_Hair": 0.0, "Blond_Hair": 1.0, "Brown_Hair": 0.0},
    }
    shares = values_read(CONFIG, names, [0.25, 0.75, 0.0, 0.0])  # a video: frames read as each
    assert shares["Hair"] == {"Black_Hair": 0.25, "Blond_Hair": 0.75, "Brown_Hair": 0.0}
    none_on = values_read(CONFIG, names, [0.0, 0.0, 0.0, 0.0])
    assert none_on == neutral_values(CONFIG), "a group read as none of its values stays neutral"
