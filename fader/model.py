"""Fader Networks: encoder, attribute-conditioned decoder and latent discriminator.

Follows Lample et al., "Fader Networks: Manipulating Images by Sliding Attributes" (NeurIPS 2017,
arXiv 1706.00409) and the authors' code (facebookresearch/FaderNetworks):

- the encoder E maps an image in [-1, 1] to a latent z with conv 4×4 / stride 2 blocks
  (BatchNorm on all but the first, LeakyReLU 0.2), channels doubling from `init_fm` up to `max_fm`;
- the decoder D mirrors it with transposed convolutions and receives the attributes as constant
  channels `[1-α, α]` at the input of *every* layer, so the attribute can never be forgotten;
  an attribute with more than two values (the authors' `n_cat` > 2, e.g. a hair colour among
  black, blond, brown, gray) gets one channel per value instead, one-hot in training;
- the latent discriminator tries to read the attributes back from z; the encoder is trained to fool
  it, which pushes the attribute information out of z and into the decoder's y input.

Paper preset: C16-C32-C64-C128-C256-C512-C512 (7 layers, z is 512×2×2 at 256×256).
Authors' code default: init_fm 32 and 6 layers (z is 512×4×4).
"""

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
)
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model
from torch import nn

from fader.conv import DownConv, UpConv, is_channels_last

WEIGHTS_NAME = "model.safetensors"
ALPHA_RANGE = (-2.0, 3.0)  # slider ends past [0, 1]: the authors extrapolate to 2 (10 for age)

# How a model's inputs are prepared, so it sees at inference what it saw in training:
CELEBA = "celeba"  # an aligned CelebA frame (178×218): its centre square, resized
ALIGN = "align"  # any photo: the face found and aligned onto CelebA's template
CENTER = "center"  # any image: its centre square, resized
PREPROCESSING = (CELEBA, ALIGN, CENTER)
DARK, LIGHT = "dark", "light"
BACKGROUNDS = (None, DARK, LIGHT)

# A model's config may come from a stranger's Hub repo: it is bounded before anything is built.
MAX_IMAGE_SIZE = 1024
MAX_ATTRIBUTES = 64  # CelebA has 40
MAX_NAME_LENGTH = 100  # characters in an attribute's or a value's name
MAX_PARAMETERS = 200_000_000  # 800 MB in float32; the authors' 256² models have 14 to 22 million
WIDTHS = ("image_size", "init_fm", "max_fm", "n_layers", "image_channels", "discriminator_hidden")


class ConfigError(ValueError):
    """A config that cannot make a network (the loader adds which model's config it was)."""


@dataclass
class FaderConfig:
    """Everything needed to rebuild a Fader Network; saved as the model's `config.json`."""

    attributes: list[str]
    image_size: int = 256
    init_fm: int = 32
    max_fm: int = 512
    n_layers: int = 6
    image_channels: int = 3
    discriminator_hidden: int = 512
    discriminator_dropout: float = 0.3
    preprocessing: str = CELEBA  # one of PREPROCESSING
    # The sliders' ends in the app: past [0, 1] the decoder extrapolates (the authors' models
    # record the range their interpolate.py used).
    slider_range: tuple[float, float] = ALPHA_RANGE
    # "Keep photo detail" s in [0, 1] the editor starts at; None: by preprocessing (see
    # `default_detail`).
    detail: float | None = None
    # Attributes with more than two values: their values, in channel order ({"Hair": ["Black_Hair",
    # "Blond_Hair", …]}). Every other attribute is binary, its channels [1-α, α].
    categories: dict[str, list[str]] = field(default_factory=dict)
    # Dropout on the decoder's three innermost layers in training (the authors' --dec_dropout).
    decoder_dropout: float = 0.0
    # The background the training images had, "dark" (MNIST: light strokes on black) or "light";
    # None: any. The editor inverts a whole-image photo whose background is the other one.
    background: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._check_sizes()
        legacy_range = self.training.pop("alpha_range", None)  # config.json before slider_range
        if legacy_range is not None and tuple(self.slider_range) == ALPHA_RANGE:
            self.slider_range = legacy_range
        low, high = (float(end) for end in self.slider_range)  # JSON gives a list
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ConfigError(f"slider_range must be two finite numbers, low < high: {low, high}.")
        self.slider_range = (low, high)
        if self.detail is not None and not 0.0 <= self.detail <= 1.0:
            raise ConfigError(f"detail must be between 0 and 1 (or null), not {self.detail}.")
        if self.preprocessing not in PREPROCESSING:
            raise ConfigError(
                f"Unknown preprocessing {self.preprocessing!r}; expected one of {PREPROCESSING}."
            )
        if not self.attributes:
            raise ConfigError("A Fader model needs at least one attribute.")
        if len(set(self.attributes)) != len(self.attributes):
            raise ConfigError(f"Attribute names must be unique, got {self.attributes}.")
        for name, values in self.categories.items():
            if name not in self.attributes or len(values) < 3 or len(set(values)) < len(values):
                raise ConfigError(
                    f"Attribute {name!r} with values {values}: an attribute with several values "
                    "must be one of the attributes and have three or more distinct values (with "
                    "two it is a binary attribute)."
                )
        if self.background not in BACKGROUNDS:
            raise ConfigError(f"background must be one of {BACKGROUNDS}; got {self.background!r}.")
        if not 0 <= self.decoder_dropout < 1:
            raise ConfigError(f"decoder_dropout must be in [0, 1); got {self.decoder_dropout}.")
        check_parameter_count(parameter_count(self), "init_fm, max_fm or the attributes")

    def _check_sizes(self) -> None:
        """Types and bounds of everything that sizes the network, checked before any of it is
        computed: `2**n_layers` or a 100,000-attribute decoder must never be attempted."""
        check_whole_numbers(self, WIDTHS)
        check_image_size(self.image_size)
        if self.n_layers > math.log2(self.image_size) or self.image_size % 2**self.n_layers:
            raise ConfigError(
                f"image_size {self.image_size} must be divisible by 2**n_layers "
                f"(n_layers={self.n_layers}); pick a power of two such as 64, 128 or 256."
            )
        check_names(self.attributes, "attributes")
        if not isinstance(self.categories, dict):
            raise ConfigError("categories must map an attribute to the list of its values.")
        check_names(list(self.categories), "categories")
        for name, values in self.categories.items():
            check_names(values, f"the values of {name}")

    @property
    def encoder_channels(self) -> list[int]:
        return [min(self.init_fm * 2**i, self.max_fm) for i in range(self.n_layers)]

    @property
    def latent_size(self) -> int:
        return self.image_size // 2**self.n_layers

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.encoder_channels[-1], self.latent_size, self.latent_size)

    @property
    def attribute_sizes(self) -> list[int]:
        """How many values each attribute takes: 2 for a binary one, else its category count.
        Each attribute has this many decoder channels and latent-discriminator logits."""
        return [len(self.categories.get(name, ())) or 2 for name in self.attributes]

    def categories_of(self, attribute: str) -> list[str] | None:
        """The values of a several-valued attribute (its slider group), None for a binary one."""
        if attribute not in self.attributes:
            raise ValueError(f"Unknown attribute {attribute!r}; this model has {self.attributes}.")
        return self.categories.get(attribute)

    @property
    def aligns_faces(self) -> bool:
        """Whether photos reach this model through face alignment (CelebA-like face models)."""
        return self.preprocessing in (CELEBA, ALIGN)

    @property
    def default_detail(self) -> float:
        """The config's `detail`, else on (1) for face models, whose decoder blurs what the photo
        shows sharply, and off (0) for whole-image models such as digits, where the old digit's
        strokes would survive a swap."""
        if self.detail is not None:
            return float(self.detail)
        return 1.0 if self.aligns_faces else 0.0


def check_whole_numbers(config: object, fields: Sequence[str]) -> None:
    """Each of `config`'s `fields` a whole number of at least 1 (JSON may give text or 1.5)."""
    for name in fields:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name} must be a whole number of at least 1, not {value!r}.")


def check_image_size(size: int) -> None:
    """Bounded because the app makes a size² crop of every photo it is given at once (one of
    65536² is over 12 GB)."""
    if size > MAX_IMAGE_SIZE:
        raise ConfigError(
            f"image_size {size} is over the limit of {MAX_IMAGE_SIZE} pixels a side (the "
            "authors' models are 256)."
        )


def check_parameter_count(parameters: int, sized_by: str) -> None:
    """Refuse a network that would be allocated whole before its weights could be checked;
    `sized_by` names the settings to lower."""
    if parameters > MAX_PARAMETERS:
        raise ConfigError(
            f"This config makes a network of about {parameters / 1e6:,.0f} million parameters; "
            f"the limit is {MAX_PARAMETERS / 1e6:,.0f} million. Lower {sized_by}."
        )


def check_names(names: object, what: str) -> None:
    """`what` is a list of at most MAX_ATTRIBUTES attribute (or value) names, each short text."""
    if not isinstance(names, list) or len(names) > MAX_ATTRIBUTES:
        count = len(names) if isinstance(names, list) else "no list"
        raise ConfigError(f"{what} must be a list of at most {MAX_ATTRIBUTES} names, not {count}.")
    for name in names:
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH:
            shown = str(name) if len(str(name)) <= 40 else str(name)[:40] + "…"
            raise ConfigError(
                f"Attribute and value names must be text of 1 to {MAX_NAME_LENGTH} "
                f"characters; {shown!r} is not."
            )


def parameter_count(config: FaderConfig) -> int:
    """The encoder's and decoder's weights, reckoned from the config alone (nothing is built):
    each layer's 4×4 kernels, the decoder's widened by the attribute channels it receives at
    every layer. Biases and BatchNorm add well under 1%."""
    widths = [config.image_channels, *config.encoder_channels]
    y_channels = sum(config.attribute_sizes)
    return sum(16 * a * (2 * b + y_channels) for a, b in pairwise(widths))


def attribute_channels(alpha: torch.Tensor) -> torch.Tensor:
    """Turn slider values α (B×n_attr) into the decoder's `[1-α, α]` pairs (B×2·n_attr).

    α outside [0, 1] is allowed on purpose: the authors extrapolate up to α = 2 or even 10.
    """
    return torch.stack([1 - alpha, alpha], dim=-1).flatten(1)


def label_channels(labels: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Training labels (B×n_attr: 0/1, or the value's index for an attribute of `sizes[i]` > 2
    values) → the decoder's channels: `[1-y, y]` for a binary attribute, one-hot otherwise."""
    if all(size == 2 for size in sizes):
        return attribute_channels(labels)
    parts = []
    for i, size in enumerate(sizes):
        if size == 2:
            parts.append(attribute_channels(labels[:, i : i + 1]))
        else:  # a comparison, not F.one_hot: that checks the values on the host (a CUDA sync)
            values = torch.arange(size, device=labels.device, dtype=labels.dtype)
            parts.append((labels[:, i : i + 1] == values).to(labels.dtype))
    return torch.cat(parts, 1)


def conv_block(c_in: int, c_out: int, batch_norm: bool, dropout: float = 0.0) -> nn.Sequential:
    """Conv 4×4 / stride 2 → (BatchNorm) → LeakyReLU(0.2): halves the resolution."""
    layers: list[nn.Module] = [DownConv(c_in, c_out, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    def __init__(self, config: FaderConfig):
        super().__init__()
        channels_out = config.encoder_channels
        channels_in = [config.image_channels, *channels_out[:-1]]
        pairs = zip(channels_in, channels_out, strict=True)
        self.layers = nn.Sequential(
            *(conv_block(c_in, c_out, batch_norm=i > 0) for i, (c_in, c_out) in enumerate(pairs))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Decoder(nn.Module):
    def __init__(self, config: FaderConfig):
        super().__init__()
        y_channels = sum(config.attribute_sizes)
        channels_in = config.encoder_channels[::-1]
        channels_out = [*channels_in[1:], config.image_channels]
        self.layers = nn.ModuleList()
        for i, (c_in, c_out) in enumerate(zip(channels_in, channels_out, strict=True)):
            last = i == len(channels_in) - 1
            block: list[nn.Module] = [UpConv(c_in + y_channels, c_out, bias=last)]
            if last:
                block.append(nn.Tanh())
            else:
                block.append(nn.BatchNorm2d(c_out))
                # The authors' dropout sits on the mirrors of the encoder's last three layers:
                # the decoder's three innermost (lowest-resolution) ones, after BatchNorm.
                if config.decoder_dropout and i < 3:
                    block.append(nn.Dropout(config.decoder_dropout))
                block.append(nn.ReLU(True))
            self.layers.append(nn.Sequential(*block))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = z
        for layer in self.layers:
            h = layer(with_attribute_channels(h, y))
        return h


def with_attribute_channels(h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """`h` with y appended as constant channels, in `h`'s memory layout.

    `torch.cat` of a channels-last map and an expanded (stride-0) one returns NCHW, and every
    channels-last convolution after it then pays two layout copies (measured: a quarter of a
    paper-preset training step). Giving y's map the same layout keeps the result channels-last.
    """
    layout = torch.channels_last if is_channels_last(h) else torch.contiguous_format
    y_map = y[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3]).to(h.dtype)
    return torch.cat([h, y_map.contiguous(memory_format=layout)], dim=1)


class LatentDiscriminator(nn.Module):
    """Predicts the attributes from z: the encoder's next conv blocks down to 1×1, then an MLP.

    Returns logits of shape B×Σ sizes, one softmax per attribute (a pair for a binary one).
    """

    def __init__(self, config: FaderConfig):
        super().__init__()
        channels = config.latent_shape[0]
        blocks = []
        for _ in range(int(math.log2(config.latent_size))):
            c_out = min(channels * 2, config.max_fm)
            blocks.append(conv_block(channels, c_out, True, config.discriminator_dropout))
            channels = c_out
        self.conv = nn.Sequential(*blocks)
        self.proj = nn.Sequential(
            nn.Linear(channels, config.discriminator_hidden),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(config.discriminator_hidden, sum(config.attribute_sizes)),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.proj(self.conv(z).flatten(1))


def attribute_loss(
    logits: torch.Tensor, targets: torch.Tensor, sizes: Sequence[int] | None = None
) -> torch.Tensor:
    """Cross-entropy of each attribute's softmax, summed over attributes as the authors do.

    `targets` holds each attribute's value (B×n_attr: 0/1, or an index below its size in
    `sizes`; default all binary); pass flipped values to train the encoder to fool.
    """
    n_attr = targets.shape[1]
    if sizes is None or all(size == 2 for size in sizes):
        pairs = logits.view(-1, n_attr, 2).transpose(1, 2)
        return F.cross_entropy(pairs, targets.long(), reduction="none").mean(0).sum()
    parts = logits.split(list(sizes), dim=1)
    return sum(F.cross_entropy(part, targets[:, i].long()) for i, part in enumerate(parts))


def attribute_predictions(logits: torch.Tensor, sizes: Sequence[int] | None = None) -> torch.Tensor:
    """The value each attribute's softmax picks (0/1, or the value's index), B×n_attr."""
    if sizes is None or all(size == 2 for size in sizes):
        return logits.view(logits.shape[0], -1, 2).argmax(-1)
    return torch.stack([part.argmax(1) for part in logits.split(list(sizes), dim=1)], dim=1)


def group_channels(
    name: str, categories: list[str], value: Mapping[str, float] | Sequence[float] | None
) -> list[float]:
    """A slider group's channels: one value per category (see `FaderNetwork.slider_channels`)."""
    if value is None:
        return [1.0] + [0.0] * (len(categories) - 1)
    if isinstance(value, Mapping):
        unknown = set(value) - set(categories)
        if unknown:
            raise ValueError(f"{name} has no value(s) {sorted(unknown)}; it has {categories}.")
        return [float(value.get(category, 0.0)) for category in categories]
    if isinstance(value, int | float) or len(value) != len(categories):
        raise ValueError(f"{name} takes one value per category of {categories}, got {value!r}.")
    return [float(v) for v in value]


class FaderNetwork(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="fader",
    tags=["fader-networks", "image-to-image"],
    license="mit",
    pipeline_tag="image-to-image",
    paper_url="https://arxiv.org/abs/1706.00409",
):
    """The autoencoder users edit with: `decode(encode(x), attribute_channels(alpha))`.

    The latent discriminator is a training-time tool and lives in `train/`, so a released model
    holds only what inference needs.
    """

    def __init__(self, config: FaderConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    @property
    def attributes(self) -> list[str]:
        return self.config.attributes

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
        """`attributes` is the B×Σ sizes tensor of decoder channels: `[1-α, α]` per binary
        attribute (see `attribute_channels`), one value per category for the others."""
        return self.decoder(z, attributes)

    def forward(self, x: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x), attributes)

    def slider_channels(
        self,
        values: Mapping[str, float | Mapping[str, float]] | Sequence[float | Sequence[float]],
        batch_size: int = 1,
    ) -> torch.Tensor:
        """Slider values (by attribute name, or in attribute order) → the decoder's channels.

        A binary attribute takes one α (→ `[1-α, α]`, 0 when not given). An attribute with
        several values (`config.categories_of(name)`) is a slider group: it takes one value per
        category (a mapping category → value, missing ones 0, or a sequence in category order),
        used as its channels as they are; not given, its first category is on (as α = 0 is for
        a binary one).
        """
        if isinstance(values, Mapping):
            unknown = set(values) - set(self.attributes)
            if unknown:
                raise ValueError(
                    f"Unknown attribute(s) {sorted(unknown)}; this model has {self.attributes}."
                )
            given = [values.get(name) for name in self.attributes]
        else:
            given = list(values)
            if len(given) != len(self.attributes):
                raise ValueError(
                    f"Expected {len(self.attributes)} slider values for {self.attributes}, "
                    f"got {len(given)}."
                )
        parts = []
        for name, value in zip(self.attributes, given, strict=True):
            categories = self.config.categories_of(name)
            if categories is None:
                parts.append(attribute_channels(torch.tensor([[float(value or 0.0)]])))
            else:
                parts.append(torch.tensor([group_channels(name, categories, value)]))
        device = next(self.parameters()).device
        return torch.cat(parts, 1).expand(batch_size, -1).contiguous().to(device)

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | Path, **kwargs: Any
    ) -> "FaderNetwork":
        """Load from a local model folder or a Hub repo id, with errors that say what to do."""
        name = str(pretrained_model_name_or_path)
        try:
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        except LocalEntryNotFoundError as error:
            raise ValueError(
                f"{name} is neither a local folder nor in the Hugging Face cache, and the Hub "
                "cannot be reached (offline?). Connect once to download it, or pass a folder."
            ) from error
        except RepositoryNotFoundError as error:
            raise ValueError(
                f"No model {name} on the Hugging Face Hub (private? log in with `hf auth login`)."
            ) from error
        except HFValidationError as error:
            raise ValueError(
                f"{name} is not a model folder here, nor a Hub repo id (NAMESPACE/NAME)."
            ) from error
        except TypeError as error:
            raise ValueError(
                f"{name} is not a Fader model: its config.json has no attributes."
            ) from error
        except ConfigError as error:
            raise ConfigError(f"{name} has a config.json that is refused: {error}") from error
        except HfHubHTTPError as error:
            raise ValueError(f"Could not download {name} from the Hub: {error}") from error

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        map_location: str = "cpu",
        strict: bool = True,
        **model_kwargs: Any,
    ) -> "FaderNetwork":
        """Load `model.safetensors` only: a pickle from the Hub or a user is never opened.

        The weights are found before the model is built: a repo that does not exist has no
        config either, and must be reported as missing rather than as "not a Fader model".
        """
        if os.path.isdir(model_id):
            weights = Path(model_id) / WEIGHTS_NAME
            if not weights.is_file():
                raise ValueError(f"{model_id} has no {WEIGHTS_NAME}: not a Fader model folder.")
        else:
            try:
                weights = hf_hub_download(
                    repo_id=model_id,
                    filename=WEIGHTS_NAME,
                    revision=revision,
                    cache_dir=cache_dir,
                    force_download=force_download,
                    token=token,
                    local_files_only=local_files_only,
                )
            except EntryNotFoundError as error:
                raise ValueError(f"{model_id} has no {WEIGHTS_NAME}: not a Fader model.") from error
        check_weights_fit(weights, shapes_of(lambda: cls(**model_kwargs)), strict)
        model = cls(**model_kwargs)
        load_model(model, str(weights), strict=strict, device=map_location)
        return model.eval()


def shapes_of(build: Callable[[], nn.Module]) -> dict[str, tuple[int, ...]]:
    """The state_dict shapes of the network `build` makes, built on the meta device: no memory."""
    with torch.device("meta"):
        return {key: tuple(value.shape) for key, value in build().state_dict().items()}


def check_weights_fit(
    weights: str | Path, expected: Mapping[str, tuple[int, ...]], strict: bool = True
) -> None:
    """Refuse a weights file whose tensors do not fit the network its config describes, from
    the file's header alone: loading would first build the whole network, then fail with
    torch's list of every mismatch. `strict`: also refuse missing and extra tensors."""
    try:
        with safe_open(str(weights), framework="pt") as file:
            found = {key: tuple(file.get_slice(key).get_shape()) for key in list(file.keys())}
    except SafetensorError as error:
        raise ValueError(
            f"{weights} is not a safetensors file ({error}); pickled weights are never "
            "loaded. Save the weights as safetensors (save_pretrained does)."
        ) from error
    problems = [
        f"{key} is {list(found[key])} in the file but {list(shape)} by the config"
        for key, shape in expected.items()
        if key in found and found[key] != shape
    ]
    if strict:
        problems += [f"{key} is missing from the file" for key in expected if key not in found]
        problems += [
            f"the file has {key}, which the config has not"
            for key in sorted(found.keys() - expected.keys())
        ]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ValueError(
            f"{weights} does not fit its config: {problems[0]}{more}. The config and the "
            "weights must come from the same model."
        )
