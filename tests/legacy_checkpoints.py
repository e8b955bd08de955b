"""Checkpoints in the authors' 2017 format, built by the tests (the real files need the network).

`AutoEncoder` rebuilds the layer structure of facebookresearch/FaderNetworks' `src/model.py`
(Sequential blocks in `enc_layers`/`dec_layers`, conv biases before BatchNorm, bias-free
transposed convolutions, Tanh at the end) and its way of running: encode, then decode with the
attribute one-hots concatenated to the input of every decoder layer. Its class path is
`src.model.AutoEncoder`, as in the released pickles.

Two writers produce the legacy (non-zip) format: today's `torch.save(...,
_use_new_zipfile_serialization=False)`, and `save_like_torch_0_3`, which pickles the way PyTorch 0.3
did when the models were released (Parameter(data) + state tuple, `_rebuild_tensor`, a `_backend`
per module, CUDA storages, no `num_batches_tracked`).
"""

import contextlib
import copyreg
import inspect
import pickle
import struct
import sys
import types
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch/serialization.py MAGIC_NUMBER
LEGACY_PROTOCOL = 1001


class AutoEncoder(nn.Module):
    """The authors' AutoEncoder (structure and forward), in small sizes for tests."""

    __module__ = "src.model"

    def __init__(
        self,
        attr: Sequence[tuple[str, int]] = (("Eyeglasses", 2),),
        img_sz: int = 32,
        img_fm: int = 3,
        init_fm: int = 8,
        max_fm: int = 32,
        n_layers: int = 4,
    ):
        super().__init__()
        self.img_sz, self.img_fm, self.init_fm, self.max_fm = img_sz, img_fm, init_fm, max_fm
        self.n_layers, self.n_skip, self.deconv_method = n_layers, 0, "convtranspose"
        self.instance_norm, self.dropout = False, 0.0
        self.attr, self.n_attr = list(attr), sum(n_cat for _, n_cat in attr)
        encoder, decoder = [], []
        c_in, c_out = img_fm, init_fm
        for i in range(n_layers):
            enc = [nn.Conv2d(c_in, c_out, 4, 2, 1)]  # with bias, also before BatchNorm
            if i > 0:
                enc.append(nn.BatchNorm2d(c_out, affine=True))
            enc.append(nn.LeakyReLU(0.2, inplace=True))
            encoder.append(nn.Sequential(*enc))
            dec = [nn.ConvTranspose2d(c_out + self.n_attr, c_in, 4, 2, 1, bias=False)]
            if i > 0:
                dec += [nn.BatchNorm2d(c_in, affine=True), nn.ReLU(inplace=True)]
            else:
                dec.append(nn.Tanh())
            decoder.insert(0, nn.Sequential(*dec))  # the decoder mirrors the encoder
            c_in, c_out = c_out, min(2 * c_out, max_fm)
        self.enc_layers = nn.ModuleList(encoder)
        self.dec_layers = nn.ModuleList(decoder)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = [x]
        for layer in self.enc_layers:
            outputs.append(layer(outputs[-1]))
        return outputs

    def decode(self, enc_outputs: list[torch.Tensor], y: torch.Tensor) -> list[torch.Tensor]:
        outputs = [enc_outputs[-1]]
        for layer in self.dec_layers:
            h = outputs[-1]
            y_map = y[:, :, None, None].expand(-1, -1, h.size(2), h.size(3))
            outputs.append(layer(torch.cat([h, y_map], 1)))
        return outputs

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x), y)[-1]


def authors_y(alphas: Sequence[float], batch_size: int) -> torch.Tensor:
    """The decoder input of the authors' interpolate.py: [1-α, α] per boolean attribute."""
    row = [v for alpha in alphas for v in (1.0 - alpha, alpha)]
    return torch.tensor([row] * batch_size)


def random_autoencoder(seed: int = 0, **kwargs) -> AutoEncoder:
    """Random weights and non-trivial BatchNorm statistics, so every tensor's mapping matters."""
    model = AutoEncoder(**kwargs)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                fan_in = (
                    module.weight[0].numel()
                    if isinstance(module, nn.Conv2d)
                    else 4 * (module.in_channels)
                )
                weight = torch.randn(module.weight.shape, generator=generator)
                module.weight.copy_(weight / fan_in**0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.3)
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(1 + 0.2 * torch.randn(n, generator=generator))
                module.bias.copy_(0.2 * torch.randn(n, generator=generator))
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
                module.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.2)
    return model.eval()


@contextlib.contextmanager
def src_model_importable() -> Iterator[None]:
    """Make `src.model.AutoEncoder` importable while pickling, as in the authors' checkout."""
    src, src_model = types.ModuleType("src"), types.ModuleType("src.model")
    src_model.__file__ = __file__  # lets torch.save find the class source, as it records it
    src_model.AutoEncoder = AutoEncoder
    src.model = src_model
    sys.modules.update({"src": src, "src.model": src_model})
    try:
        yield
    finally:
        del sys.modules["src"], sys.modules["src.model"]


def save_with_torch(module: nn.Module, path: Path) -> Path:
    with src_model_importable():
        torch.save(module, path, _use_new_zipfile_serialization=False)
    return path


class _Storage:
    def __init__(self, tensor: torch.Tensor):
        self.data = tensor.detach().float().contiguous().cpu()
        self.key = str(id(self))


class _ThnnBackend:
    """PyTorch 0.3 kept a backend object on every module and pickled it as this call."""

    def __reduce__(self):
        import torch.nn.backends.thnn

        return (torch.nn.backends.thnn._get_thnn_function_backend, ())


_MODULE_STATE_0_3 = {"_parameters", "_buffers", "_modules", "training"}


def _state_0_3(module: nn.Module) -> dict:
    state = {
        k: v
        for k, v in vars(module).items()
        if not k.startswith("_") and k not in ("track_running_stats", "padding_mode")
    }
    state.update({k: OrderedDict(getattr(module, k)) for k in ("_parameters", "_modules")})
    state["_buffers"] = OrderedDict(
        (k, v) for k, v in module._buffers.items() if k != "num_batches_tracked"
    )
    state["_backend"] = _ThnnBackend()
    for hooks in ("_backward_hooks", "_forward_hooks", "_forward_pre_hooks"):
        state[hooks] = OrderedDict()
    return state


Layout = tuple[int, tuple[int, ...], tuple[int, ...]]  # storage offset, size, stride


class _Pickler03(pickle.Pickler):
    """`layouts` replaces the (offset, size, stride) written for tensors, by their data_ptr."""

    def __init__(self, file, layouts: dict[int, Layout] | None = None):
        super().__init__(file, protocol=2)
        self.storages: dict[str, _Storage] = {}
        self.classes: set[type] = set()
        self.layouts = layouts or {}

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            self.storages[obj.key] = obj
            return ("storage", torch.cuda.FloatStorage, obj.key, "cuda:0", obj.data.numel(), None)
        if isinstance(obj, type) and issubclass(obj, nn.Module) and obj not in self.classes:
            self.classes.add(obj)
            return ("module", obj, inspect.getsourcefile(obj), inspect.getsource(obj))
        return None

    def reducer_override(self, obj):
        if isinstance(obj, type):
            return NotImplemented
        if isinstance(obj, nn.Parameter):
            return (nn.Parameter, (obj.detach(),), (obj.requires_grad, False, OrderedDict()))
        if isinstance(obj, torch.Tensor):
            storage = _Storage(obj)
            layout = (0, tuple(obj.shape), storage.data.stride())
            offset, size, stride = self.layouts.get(obj.data_ptr(), layout)
            args = (storage, offset, size, stride)
            return (torch._utils._rebuild_tensor, args)
        if isinstance(obj, nn.Module):
            return (copyreg.__newobj__, (type(obj),), _state_0_3(obj))
        return NotImplemented


def write_legacy(obj, path: Path, pickler_type: Callable[..., pickle.Pickler] = _Pickler03) -> Path:
    """The legacy layout: magic, protocol, sys info, the object, storage keys, raw storages."""
    with open(path, "wb") as file:
        pickle.dump(LEGACY_MAGIC, file, protocol=2)
        pickle.dump(LEGACY_PROTOCOL, file, protocol=2)
        sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"long": 8}}
        pickle.dump(sys_info, file, protocol=2)
        pickler = pickler_type(file)
        pickler.dump(obj)
        storages = getattr(pickler, "storages", {})
        keys = sorted(storages)
        pickle.dump(keys, file, protocol=2)
        for key in keys:
            data = storages[key].data
            file.write(struct.pack("<q", data.numel()))
            file.write(data.numpy().tobytes())
    return path


def save_like_torch_0_3(
    module: nn.Module, path: Path, layouts: dict[torch.Tensor, Layout] | None = None
) -> Path:
    """`layouts` writes the given tensors with another (offset, size, stride): crafted files."""
    by_pointer = {tensor.data_ptr(): layout for tensor, layout in (layouts or {}).items()}
    with src_model_importable():
        return write_legacy(module, path, lambda file: _Pickler03(file, by_pointer))
