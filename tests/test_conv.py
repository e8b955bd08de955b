"""The 4×4 / stride-2 convolutions compute exactly what nn.Conv2d / nn.ConvTranspose2d do."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fader.conv import MATMUL_MAX_POSITIONS, DownConv, UpConv, is_channels_last

LAYOUTS = [torch.contiguous_format, torch.channels_last]


def reference(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What PyTorch's own convolution computes with the module's weights."""
    op = F.conv_transpose2d if isinstance(module, UpConv) else F.conv2d
    return op(x, module.weight, module.bias, stride=2, padding=1)


def convolutions_run(module: nn.Module, x: torch.Tensor) -> int:
    """How many of PyTorch's convolution kernels the module's forward and backward call."""
    with torch.profiler.profile() as profile:
        module(x).sum().backward()
    return sum(event.key.startswith("aten::convolution") for event in profile.key_averages())


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("size", [1, 2, 4])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("kind", [DownConv, UpConv])
def test_matches_pytorch_convolution_and_its_gradients(kind, bias, size, layout):
    torch.manual_seed(0)
    module = kind(12, 5, bias=bias).double().to(memory_format=layout)
    map_size = 2 * size if kind is DownConv else size  # output 1×1…4×4 / input 1×1…4×4
    x = torch.randn(3, 12, map_size, map_size, dtype=torch.float64)
    x = x.contiguous(memory_format=layout).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()

    out, expected = module(x), reference(module, x_ref)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    weights = torch.randn_like(expected)
    ours = torch.autograd.grad((out * weights).sum(), [x, *module.parameters()])
    theirs = torch.autograd.grad((expected * weights).sum(), [x_ref, *module.parameters()])
    for mine, reference_grad in zip(ours, theirs, strict=True):
        torch.testing.assert_close(mine, reference_grad, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", [DownConv, UpConv])
def test_tiny_maps_skip_the_convolution_kernels_and_large_ones_use_them(kind):
    """The speed-up (BENCHMARKS.md) depends on which path runs, so the switch is pinned here."""
    module = kind(8, 8)
    positions_side = int(MATMUL_MAX_POSITIONS**0.5)
    small = positions_side * 2 if kind is DownConv else positions_side
    assert convolutions_run(module, torch.randn(2, 8, small, small)) == 0
    assert convolutions_run(module, torch.randn(2, 8, 4 * small, 4 * small)) > 0


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", [DownConv, UpConv])
def test_output_keeps_the_inputs_memory_layout(kind, layout):
    x = torch.randn(2, 8, 4, 4).contiguous(memory_format=layout)
    out = kind(8, 6).to(memory_format=layout)(x)
    assert is_channels_last(out) == (layout == torch.channels_last)


def test_state_dict_is_that_of_pytorchs_modules():
    """Saved models and the authors' converted weights load into either class unchanged."""
    ours, theirs = UpConv(6, 4, bias=False), nn.ConvTranspose2d(6, 4, 4, 2, 1, bias=False)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }
    assert DownConv(6, 4).state_dict().keys() == nn.Conv2d(6, 4, 4, 2, 1).state_dict().keys()
