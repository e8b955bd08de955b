"""Convert the authors' released CelebA Fader Networks into our safetensors format, safely.

The authors (facebookresearch/FaderNetworks) released five 256×256 models as PyTorch-0.3 pickles of
whole `src.model.AutoEncoder` modules. `torch.load` on such a file runs whatever the pickle asks
for, so this module reads the legacy format itself: a restricted unpickler turns every module into
an inert record of its state and rebuilds nothing but tensors. The records are then mapped onto
our FaderNetwork with exact eval-mode equivalence (their conv biases folded into BatchNorm).

    python -m fader.convert_authors eyeglasses --out models/authors-eyeglasses
    python -m fader.convert_authors ~/Downloads/male.pth --out models/authors-male

The released weights are licensed CC BY-NC 4.0 (non-commercial); the model card says so.
"""

import argparse
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fader.environment import offline, user_cache_dir
from fader.legacy_pickle import CheckpointError, ModuleRecord, TensorRef, read_legacy_checkpoint
from fader.model import CELEBA, WEIGHTS_NAME, FaderConfig, FaderNetwork

AUTHORS_URL = "https://dl.fbaipublicfiles.com/FaderNetworks"
AUTHORS_REPO = "https://github.com/facebookresearch/FaderNetworks"
LICENSE = "cc-by-nc-4.0"


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


# ---------------------------------------------------------------------------------------------
# Mapping the authors' AutoEncoder onto FaderNetwork.
# ---------------------------------------------------------------------------------------------


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


def released_for(attributes: Any) -> str | None:
    """The released model name ("eyeglasses") whose single attribute this is, if any."""
    names = [name for name, _ in attributes] if isinstance(attributes, list | tuple) else []
    for release, info in RELEASED.items():
        if names == [info.attribute]:
            return release
    return None


def released_url(name: str) -> str:
    base = os.environ.get("FADER_AUTHORS_URL", AUTHORS_URL).rstrip("/")
    return f"{base}/{name}.pth"


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


def model_card(config: FaderConfig) -> str:
    """README.md for a converted model: where it comes from, its licence, how to slide it."""
    low, high = config.slider_range
    release = released_for([(name, 2) for name in config.attributes])
    released = (
        f"\nThe authors' released {release} model is {AUTHORS_URL}/{release}.pth."
        if release
        else ""
    )
    attributes = ", ".join(f"`{name}`" for name in config.attributes)
    return f"""---
library_name: fader
license: {LICENSE}
pipeline_tag: image-to-image
tags:
- fader-networks
- image-to-image
- celeba
---

# Fader Network by the paper's authors: {", ".join(config.attributes)}

A {config.image_size}×{config.image_size} CelebA model trained with the authors' code for
[Fader Networks](https://arxiv.org/abs/1706.00409) (Lample et al., NeurIPS 2017,
{AUTHORS_REPO}).{released}

Converted from `{config.training["converted_from"]}` to safetensors by `fader.convert_authors`,
which reads the original pickle without running any of its code. In eval mode the converted
network computes the same outputs as the original (conv biases are folded into BatchNorm).

**Licence: [CC BY-NC 4.0](https://creativecommons.org/licenses/by-nc/4.0/) — non-commercial use
only**, with attribution to the authors. This is the licence of the authors' released weights,
not of the Fader code.

## Use it

Attribute: {attributes}. Inputs are aligned CelebA crops (`celeba` preprocessing: the 178×218
frame cropped to its central 178×178 square, resized to {config.image_size}, scaled to [-1, 1]).
Slider α from {low:g} to {high:g}: the range of the authors' `interpolate.py` for this model
(α = 0 absent, α = 1 present; values beyond extrapolate).

```python
from fader import FaderNetwork

model = FaderNetwork.from_pretrained("path/to/this/folder")
alpha = model.slider_channels({{"{config.attributes[0]}": {high:g}}})
edited = model.decode(model.encode(x), alpha)  # x: B×3×H×W in [-1, 1]
```

Encoder channels {config.encoder_channels}, latent {"×".join(map(str, config.latent_shape))}.
"""


def write_model_folder(model: FaderNetwork, out: Path) -> Path:
    """config.json + model.safetensors + README.md, staged beside `out` and moved in atomically."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; --out needs a folder (new or existing).")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(staging)
        (staging / "README.md").write_text(model_card(model.config))
        try:
            staging.rename(out)  # the whole folder appears at once
            return out
        except OSError:  # `out` exists with files in it: replace ours one by one
            for file in staging.iterdir():
                file.replace(out / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


# ---------------------------------------------------------------------------------------------
# Downloading the released files (on demand, cached, never in offline mode).
# ---------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    custom = os.environ.get("FADER_AUTHORS_CACHE")
    return Path(custom).expanduser() if custom else user_cache_dir("authors")


def _release_name(name: str) -> str:
    if name not in RELEASED:
        raise ValueError(f"Unknown authors' model {name!r}; choose one of {sorted(RELEASED)}.")
    return name


def _download(url: str, destination: Path) -> None:
    """Stream `url` to a temp file beside `destination`, check it, then rename it into place."""
    from tqdm.auto import tqdm

    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{destination.name}.", dir=destination.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as file, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=destination.name) as bar:
                while chunk := response.read(1 << 20):
                    file.write(chunk)
                    bar.update(len(chunk))
            received = file.tell()
        if total is not None and received != total:
            raise ValueError(
                f"The download of {url} stopped after {received} of {total} bytes; try again."
            )
        try:
            read_legacy_checkpoint(temp)  # a corrupt download never enters the cache
        except CheckpointError as error:
            raise ValueError(f"The file downloaded from {url} is unusable: {error}") from error
        temp.replace(destination)
    except (urllib.error.URLError, OSError) as error:
        raise ValueError(
            f"Could not download {url}: {error}. Check the connection, or set "
            "FADER_AUTHORS_URL to a mirror holding the authors' files."
        ) from error
    finally:
        temp.unlink(missing_ok=True)


def authors_checkpoint(name: str, cache_dir: str | Path | None = None) -> Path:
    """The released `<name>.pth` in the cache, downloaded first if it is not there yet."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    checkpoint = cache / f"{_release_name(name)}.pth"
    if checkpoint.is_file():
        return checkpoint
    url = released_url(name)
    if offline():
        raise ValueError(
            f"The authors' {name} model is not cached and offline mode is on (FADER_OFFLINE or "
            f"HF_HUB_OFFLINE). Unset it to download {url}, or download that file elsewhere and "
            f"run: python -m fader.convert_authors path/to/{name}.pth --out DIR"
        )
    _download(url, checkpoint)
    return checkpoint


def authors_model(name: str, cache_dir: str | Path | None = None) -> Path:
    """A converted model folder for the released `name`, downloading and converting once."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    folder = cache / _release_name(name)
    if (folder / WEIGHTS_NAME).is_file() and (folder / "config.json").is_file():
        return folder
    model = convert_checkpoint(
        authors_checkpoint(name, cache), RELEASED[name].alpha_range, f"{AUTHORS_URL}/{name}.pth"
    )
    return write_model_folder(model, folder)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m fader.convert_authors",
        description="Convert one of the authors' released CelebA Fader Networks (a PyTorch-0.3 "
        "pickle) into a Fader model folder (config.json, model.safetensors, README.md). The "
        "pickle is read without running its code. The released weights are CC BY-NC 4.0: "
        "non-commercial use only.",
    )
    parser.add_argument(
        "model",
        help=f"a released name ({', '.join(RELEASED)}), downloaded from {AUTHORS_URL} into the "
        "cache on first use, or the path of a .pth file you downloaded",
    )
    parser.add_argument("--out", type=Path, required=True, help="model folder to write")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where downloads are kept (default: $FADER_AUTHORS_CACHE or ~/.cache/fader/authors)",
    )
    parser.add_argument(
        "--alpha-range",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="slider range recorded in config.json (default: the authors' range for the "
        "attribute, e.g. -1 2 for Eyeglasses/Male, -9 10 for Young/Narrow_Eyes/Pointy_Nose)",
    )
    args = parser.parse_args(argv)
    try:
        if args.model in RELEASED:
            checkpoint = authors_checkpoint(args.model, args.cache_dir)
            source = f"{AUTHORS_URL}/{args.model}.pth"
        else:
            checkpoint, source = Path(args.model), None
            if not checkpoint.is_file():
                raise ValueError(
                    f"{checkpoint} is neither a file nor a released name ({', '.join(RELEASED)})."
                )
        model = convert_checkpoint(checkpoint, args.alpha_range, source)
        out = write_model_folder(model, args.out)
    except ValueError as error:
        parser.exit(1, f"error: {error}\n")
    config = model.config
    print(
        f"Wrote {out}: {', '.join(config.attributes)}, {config.image_size}px, "
        f"α in {list(config.slider_range)} (licence CC BY-NC 4.0, non-commercial)."
    )


if __name__ == "__main__":
    main(sys.argv[1:])
