"""An attribute classifier: the independent judge of Fader edits, and the app's first guess.

The authors judged their swaps with a separately trained classifier; so do we (`swap_accuracy`
in `train/evaluate.py`). Saved beside a model (`classifier.json` + `classifier.safetensors`),
it also tells the app where each slider should start for an uploaded photo.

Like the latent discriminator it gives one softmax pair per attribute. Class-folder data
(digits, apples vs oranges) has exactly one attribute on per image: such a classifier is
`exclusive`, and its reading is the single most likely class.
"""

import json
import math
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from fader.model import (
    ConfigError,
    attribute_loss,
    check_image_size,
    check_names,
    check_parameter_count,
    check_weights_fit,
    check_whole_numbers,
    shapes_of,
)
from fader.modes import evaluating

WEIGHTS_NAME = "classifier.safetensors"
CONFIG_NAME = "classifier.json"


@dataclass
class ClassifierConfig:
    attributes: list[str]
    exclusive: bool = False  # one attribute on per image: read as a single choice
    image_size: int = 32
    image_channels: int = 3
    width: int = 32
    metrics: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Bounded as a model's config is: a classifier ships beside it, from a stranger's repo."""
        check_whole_numbers(self, ("image_size", "image_channels", "width"))
        check_image_size(self.image_size)
        check_names(self.attributes, "attributes")
        widths = [self.image_channels, *self.channels]
        check_parameter_count(sum(9 * a * b for a, b in pairwise(widths)), "width")

    @property
    def channels(self) -> list[int]:
        """Stride-2 blocks down to 4×4 (at least three), widths doubling up to 8× `width`."""
        blocks = max(3, int(math.log2(self.image_size)) - 2)
        return [min(self.width * 2**i, 8 * self.width) for i in range(blocks)]


class Classifier(nn.Module):
    """Conv 3×3 / stride 2 blocks with BatchNorm, global average pooling, a linear head."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        blocks: list[nn.Module] = []
        c_in = config.image_channels
        for c_out in config.channels:
            blocks += [nn.Conv2d(c_in, c_out, 3, 2, 1), nn.BatchNorm2d(c_out), nn.ReLU(True)]
            c_in = c_out
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c_in, 2 * len(config.attributes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×2·n_attr logits (a pair per attribute) for images in [-1, 1], the model's range."""
        return self.head(self.features(x))

    def loss(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return attribute_loss(self(x), labels)

    @torch.inference_mode()
    def probabilities(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """P(attribute is on), B×n_attr; for an exclusive classifier they sum to 1 per image."""
        margins = []
        with evaluating(self):
            for start in range(0, len(x), batch_size):
                pairs = self(x[start : start + batch_size]).view(-1, len(self.config.attributes), 2)
                margins.append(pairs[..., 1] - pairs[..., 0])
        margin = torch.cat(margins)
        return margin.softmax(1) if self.config.exclusive else margin.sigmoid()

    def read(self, x: torch.Tensor) -> torch.Tensor:
        """The attribute values (0/1, B×n_attr) the classifier sees; one-hot when exclusive."""
        p = self.probabilities(x)
        if self.config.exclusive:
            return torch.zeros_like(p).scatter_(1, p.argmax(1, keepdim=True), 1.0)
        return (p > 0.5).float()

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_model(self, str(folder / WEIGHTS_NAME))
        (folder / CONFIG_NAME).write_text(json.dumps(asdict(self.config), indent=2) + "\n")

    @classmethod
    def from_folder(cls, folder: str | Path) -> "Classifier":
        """Load from safetensors only, with a message when the folder holds no classifier."""
        folder = Path(folder)
        if not (folder / CONFIG_NAME).is_file() or not (folder / WEIGHTS_NAME).is_file():
            raise ValueError(
                f"{folder} holds no classifier ({CONFIG_NAME} + {WEIGHTS_NAME}); train one with "
                "python -m train.classifier --data … --out FOLDER."
            )
        try:
            config = ClassifierConfig(**json.loads((folder / CONFIG_NAME).read_text()))
        except (json.JSONDecodeError, TypeError, ConfigError) as error:
            raise ValueError(
                f"{folder / CONFIG_NAME} is not a classifier config ({error})."
            ) from None
        check_weights_fit(folder / WEIGHTS_NAME, shapes_of(lambda: cls(config)))
        classifier = cls(config)
        load_model(classifier, str(folder / WEIGHTS_NAME))
        return classifier.eval()
