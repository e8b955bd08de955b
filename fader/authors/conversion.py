"""The authors' AutoEncoder, read from their pickle, as our FaderNetwork: exactly, in eval mode.

The authors (facebookresearch/FaderNetworks) released their 256×256 CelebA models as PyTorch-0.3
pickles of whole `src.model.AutoEncoder` modules. `fader.authors.legacy_pickle` reads such a file
into inert records without running it; this module maps those records onto our config and state
dict, refusing what our network cannot represent, with their conv biases folded into BatchNorm
so that eval-mode outputs match. `save_converted` writes the result as a model folder whose card
names the origin and the CC BY-NC 4.0 licence of the released weights.
"""

from pathlib import Path
from typing import Any

import torch

from fader.authors.legacy_pickle import (
    CheckpointError,
    ModuleRecord,
    TensorRef,
    read_legacy_checkpoint,
)
from fader.authors.releases import AUTHORS_REPO, AUTHORS_URL, LICENSE, RELEASED, released_for
from fader.card import model_card
from fader.folder import write_model_folder
from fader.model import CELEBA, FaderConfig, FaderNetwork


def _children(record: ModuleRecord, where: str) -> list[ModuleRecord]:
    modules = record.state.get("_modules")
    if not isinstance(modules, dict) or not all(
        isinstance(m, ModuleRecord) for m in modules.values()
    ):
        raise CheckpointError(f"{where} has no sub-modules; not an authors' AutoEncoder.")
    return list(modules.values())


def _child(record: ModuleRecord, name: str) -> ModuleRecord:
    child = record.state.get("_modules", {}).get(name)
    if not isinstance(child, ModuleRecord):
        raise CheckpointError(f"The AutoEncoder in the file has no {name}; unknown variant.")
    return child


def _tensor(record: ModuleRecord, name: str) -> torch.Tensor | None:
    for group in ("_parameters", "_buffers"):
        value = record.state.get(group, {}).get(name)
        if isinstance(value, TensorRef):
            return value.materialize().float()
        if value is not None:
            raise CheckpointError(f"{record.path}.{name} is not a tensor.")
    return None


def _required(record: ModuleRecord, name: str, where: str) -> torch.Tensor:
    value = _tensor(record, name)
    if value is None:
        raise CheckpointError(f"{where} has no {name}.")
    return value


def _unsupported(what: str) -> CheckpointError:
    return CheckpointError(
        f"This checkpoint uses {what}, which FaderNetwork cannot represent; only the authors' "
        "default architecture (convtranspose decoder, BatchNorm, no skip connections, binary "
        "attributes) converts."
    )


def _pair(value: Any) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, tuple | list) else (value, value)


def fader_config(autoencoder: ModuleRecord, alpha_range: list[float], source: str) -> FaderConfig:
    """Our config for their AutoEncoder, refusing the options our network does not have."""
    if not isinstance(autoencoder, ModuleRecord) or autoencoder.path != "src.model.AutoEncoder":
        raise CheckpointError(
            f"The file holds {autoencoder!r}, not the authors' src.model.AutoEncoder "
            "(their classifier and discriminators are not editing models)."
        )
    state = autoencoder.state
    needed = ["img_sz", "img_fm", "init_fm", "max_fm", "n_layers", "attr", "n_attr"]
    missing = [name for name in needed if name not in state]
    if missing:
        raise CheckpointError(f"The AutoEncoder in the file lacks {missing}; unknown variant.")
    if state.get("n_skip", 0):
        raise _unsupported(f"{state['n_skip']} skip connection(s)")
    if state.get("deconv_method", "convtranspose") != "convtranspose":
        raise _unsupported(f"the '{state['deconv_method']}' decoder")
    if state.get("instance_norm", False):
        raise _unsupported("instance normalization")
    attributes = [(str(name), n_cat) for name, n_cat in state["attr"]]
    if any(n_cat != 2 for _, n_cat in attributes) or state["n_attr"] != 2 * len(attributes):
        raise _unsupported(f"categorical attributes {attributes}")
    training = {
        "origin": f"Lample et al., {AUTHORS_REPO} (released model)",
        "converted_from": source,
        "license": LICENSE,
    }
    return FaderConfig(
        attributes=[name for name, _ in attributes],
        image_size=int(state["img_sz"]),
        init_fm=int(state["init_fm"]),
        max_fm=int(state["max_fm"]),
        n_layers=int(state["n_layers"]),
        image_channels=int(state["img_fm"]),
        preprocessing=CELEBA,
        slider_range=tuple(alpha_range),
        training=training,
    )


def _layer_kinds(block: ModuleRecord, expected: list[str], where: str) -> list[ModuleRecord]:
    """The block's layers, Dropout dropped (a no-op in eval), checked against what we build."""
    layers = [m for m in _children(block, where) if m.kind != "Dropout"]
    kinds = [m.kind for m in layers]
    if kinds != expected:
        raise _unsupported(f"{where} = {kinds} (expected {expected})")
    return layers


def _check_conv(conv: ModuleRecord, where: str) -> None:
    s = conv.state
    shape = (_pair(s.get("kernel_size")), _pair(s.get("stride")), _pair(s.get("padding")))
    if shape != ((4, 4), (2, 2), (1, 1)) or s.get("groups", 1) != 1:
        raise _unsupported(f"{where}: kernel/stride/padding {shape}, groups {s.get('groups')}")
    if _pair(s.get("dilation", 1)) != (1, 1) or any(_pair(s.get("output_padding", 0))):
        raise _unsupported(f"{where}: dilation or output padding")


def _batch_norm(
    norm: ModuleRecord, conv_bias: torch.Tensor | None, eps: float, where: str
) -> dict[str, torch.Tensor]:
    """Their BatchNorm as ours, absorbing the preceding conv's bias and their eps exactly.

    In eval mode BN((Wx + b) - μ) = BN(Wx - (μ - b)), and σ² + ε_theirs = (σ² + ε_theirs - ε) + ε.
    """
    mean = _required(norm, "running_mean", where)
    var = _required(norm, "running_var", where)
    weight, bias = _tensor(norm, "weight"), _tensor(norm, "bias")
    return {
        "weight": torch.ones_like(mean) if weight is None else weight,
        "bias": torch.zeros_like(mean) if bias is None else bias,
        "running_mean": mean if conv_bias is None else mean - conv_bias,
        "running_var": var + (float(norm.state.get("eps", eps)) - eps),
    }


def fader_state_dict(autoencoder: ModuleRecord, model: FaderNetwork) -> dict[str, torch.Tensor]:
    """Their enc_layers/dec_layers tensors under our names (y channels already match: [1-α, α])."""
    n = model.config.n_layers
    eps = next((m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)), 1e-5)
    slope = 0.2
    state: dict[str, torch.Tensor] = {}
    encoder = _children(_child(autoencoder, "enc_layers"), "enc_layers")
    decoder = _children(_child(autoencoder, "dec_layers"), "dec_layers")
    if len(encoder) != n or len(decoder) != n:
        raise CheckpointError(f"Expected {n} encoder and decoder blocks; the file disagrees.")

    for i, block in enumerate(encoder):
        where = f"enc_layers[{i}]"
        expected = ["Conv2d", "BatchNorm2d", "LeakyReLU"] if i else ["Conv2d", "LeakyReLU"]
        layers = _layer_kinds(block, expected, where)
        _check_conv(layers[0], where)
        if layers[-1].state.get("negative_slope") != slope:
            raise _unsupported(f"{where}: LeakyReLU slope {layers[-1].state.get('negative_slope')}")
        prefix = f"encoder.layers.{i}"
        state[f"{prefix}.0.weight"] = _required(layers[0], "weight", where)
        bias = _tensor(layers[0], "bias")
        if i == 0:
            state[f"{prefix}.0.bias"] = torch.zeros(model.config.init_fm) if bias is None else bias
        else:
            for name, value in _batch_norm(layers[1], bias, eps, where).items():
                state[f"{prefix}.1.{name}"] = value

    for i, block in enumerate(decoder):
        where, last = f"dec_layers[{i}]", i == n - 1
        expected = (
            ["ConvTranspose2d", "Tanh"] if last else ["ConvTranspose2d", "BatchNorm2d", "ReLU"]
        )
        layers = _layer_kinds(block, expected, where)
        _check_conv(layers[0], where)
        prefix = f"decoder.layers.{i}"
        state[f"{prefix}.0.weight"] = _required(layers[0], "weight", where)
        bias = _tensor(layers[0], "bias")
        if last:
            # The authors' transposed convolutions have no bias; ours has one on the last layer.
            state[f"{prefix}.0.bias"] = (
                torch.zeros(model.config.image_channels) if bias is None else bias
            )
        else:
            for name, value in _batch_norm(layers[1], bias, eps, where).items():
                state[f"{prefix}.1.{name}"] = value

    expected_shapes = {k: v.shape for k, v in model.state_dict().items()}
    for key, value in state.items():
        if value.shape != expected_shapes[key]:
            raise CheckpointError(
                f"{key}: the file has shape {tuple(value.shape)}, the architecture in its own "
                f"attributes implies {tuple(expected_shapes[key])}; the file is inconsistent."
            )
    return state


def convert_checkpoint(
    checkpoint: str | Path, alpha_range: list[float] | None = None, source: str | None = None
) -> FaderNetwork:
    """A FaderNetwork (eval mode) equal to the authors' AutoEncoder stored in `checkpoint`."""
    autoencoder = read_legacy_checkpoint(checkpoint)
    state = autoencoder.state if isinstance(autoencoder, ModuleRecord) else {}
    release = released_for(state.get("attr"))
    if alpha_range is None:
        alpha_range = RELEASED[release].alpha_range if release else [0.0, 1.0]
    if source is None:
        source = Path(checkpoint).name
    try:
        model = FaderNetwork(fader_config(autoencoder, [float(a) for a in alpha_range], source))
        state_dict = fader_state_dict(autoencoder, model)
    except (AttributeError, TypeError, KeyError, IndexError, RuntimeError) as error:
        raise CheckpointError(
            f"{checkpoint} does not have the structure of the authors' AutoEncoder ({error})."
        ) from error
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    missing = [key for key in missing if not key.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise CheckpointError(f"Conversion incomplete: missing {missing}, unexpected {unexpected}.")
    return model.eval()


def origin_note(config: FaderConfig) -> str:
    """The card's note on a converted model: whose it is, how it was converted, its licence."""
    release = released_for([(name, 2) for name in config.attributes])
    released = f" The authors' released file is {AUTHORS_URL}/{release}.pth." if release else ""
    return f"""Trained by the paper's authors with their code ({AUTHORS_REPO}) on CelebA.{released}
Converted from `{config.training["converted_from"]}` to safetensors by `python -m fader.authors`,
which reads the original pickle without running any of its code. In eval mode the converted
network computes the same outputs as the original (conv biases are folded into BatchNorm). The
slider range is the one the authors' `interpolate.py` uses for this attribute.

**Licence: [CC BY-NC 4.0](https://creativecommons.org/licenses/by-nc/4.0/) — non-commercial use
only**, with attribution to the authors. This is the licence of the authors' released weights,
not of the Fader code."""


def save_converted(model: FaderNetwork, out: str | Path) -> Path:
    """The converted model as a model folder (config, weights, card), written atomically."""
    card = model_card(model.config, str(out), datasets=["celeba"], origin=origin_note(model.config))
    return write_model_folder(out, model, card)
