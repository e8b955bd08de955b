"""What the paper's authors released: five CelebA models, where they are, under which licence.

The facts the converter, its download cache, the model card and the app's model list share.
"""

import os
from dataclasses import dataclass
from typing import Any

AUTHORS_URL = "https://dl.fbaipublicfiles.com/FaderNetworks"
AUTHORS_REPO = "https://github.com/facebookresearch/FaderNetworks"
LICENSE = "cc-by-nc-4.0"  # the released weights' licence (non-commercial), not the code's


@dataclass(frozen=True)
class ReleasedModel:
    attribute: str
    # The authors' interpolate.py sweeps α from 1 - alpha_min to alpha_max and their README uses
    # alpha_min = alpha_max = 2 for glasses/gender, 10 for the subtler attributes.
    alpha_max: float

    @property
    def alpha_range(self) -> list[float]:
        return [1.0 - self.alpha_max, self.alpha_max]


RELEASED = {
    "eyeglasses": ReleasedModel("Eyeglasses", 2.0),
    "male": ReleasedModel("Male", 2.0),
    "young": ReleasedModel("Young", 10.0),
    "narrow_eyes": ReleasedModel("Narrow_Eyes", 10.0),
    "pointy_nose": ReleasedModel("Pointy_Nose", 10.0),
}


def release_name(name: str) -> str:
    """`name` itself when it is a released model, else a ValueError listing the choices."""
    if name not in RELEASED:
        raise ValueError(f"Unknown authors' model {name!r}; choose one of {sorted(RELEASED)}.")
    return name


def released_for(attributes: Any) -> str | None:
    """The released model name ("eyeglasses") whose single attribute this is, if any.

    `attributes` is the authors' `attr` list of (name, number of values) pairs, as read from a
    file that may hold anything: whatever is not such a list matches nothing.
    """
    names = [name for name, _ in attributes] if isinstance(attributes, list | tuple) else []
    for release, info in RELEASED.items():
        if names == [info.attribute]:
            return release
    return None


def released_url(name: str) -> str:
    """Where `<name>.pth` is downloaded from: the authors' site, or `$FADER_AUTHORS_URL`."""
    base = os.environ.get("FADER_AUTHORS_URL", AUTHORS_URL).rstrip("/")
    return f"{base}/{name}.pth"
