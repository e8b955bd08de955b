"""The Fader Networks' 4×4 / stride-2 convolutions, as matrix products where the map is tiny.

On CPU, oneDNN's convolution kernels are built for large maps. On the innermost layers
(512×512×4×4 weights on 2×2 and 4×4 maps) they spend their time on the weight: its gradient
alone took 55–61 ms for a 512→512 convolution of a 4×4 map at batch 32 (`ONEDNN_VERBOSE=1`),
plus a reorder of the whole weight into a blocked layout on every call. Forward and backward
took 123 ms in all, against 52 ms for the same product as plain matrix multiplications. So where
a weight meets at most `MATMUL_MAX_POSITIONS` positions of each image, these modules compute
the convolution as the matrix product it is (im2col, or col2im for the transposed one); elsewhere
they are plain `nn.Conv2d` / `nn.ConvTranspose2d`. Parameters, state_dict and the arithmetic are
the same; only the float rounding order differs.
"""

import torch
import torch.nn.functional as F
from torch import nn

# Whole paper- and authors-preset training steps did best overall at 16, against 4 and 64.
MATMUL_MAX_POSITIONS = 16
KERNEL, STRIDE, PADDING = 4, 2, 1


class DownConv(nn.Conv2d):
    """Conv 4×4 / stride 2 / padding 1: halves the resolution."""

    def __init__(self, c_in: int, c_out: int, bias: bool = True):
        super().__init__(c_in, c_out, KERNEL, STRIDE, PADDING, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = (x.shape[2] // STRIDE) * (x.shape[3] // STRIDE)
        if x.device.type != "cpu" or positions > MATMUL_MAX_POSITIONS:
            return super().forward(x)
        batch, channels = x.shape[:2]
        padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, PADDING, PADDING, PADDING, PADDING))
        windows = padded.unfold(1, KERNEL, STRIDE).unfold(2, KERNEL, STRIDE)  # B,Ho,Wo,C,kh,kw
        out_h, out_w = windows.shape[1:3]
        columns = windows.permute(0, 1, 2, 4, 5, 3).reshape(-1, KERNEL * KERNEL * channels)
        # (kh, kw, C) is the weight's storage order when it is channels-last: no copy.
        matrix = self.weight.permute(0, 2, 3, 1).reshape(self.out_channels, -1)
        out = columns @ matrix.T if self.bias is None else torch.addmm(self.bias, columns, matrix.T)
        return in_layout_of(x, out.view(batch, out_h, out_w, -1).permute(0, 3, 1, 2))


class UpConv(nn.ConvTranspose2d):
    """Transposed conv 4×4 / stride 2 / padding 1: doubles the resolution."""

    def __init__(self, c_in: int, c_out: int, bias: bool = True):
        super().__init__(c_in, c_out, KERNEL, STRIDE, PADDING, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        if x.device.type != "cpu" or height * width > MATMUL_MAX_POSITIONS:
            return super().forward(x)
        rows = x.permute(0, 2, 3, 1).reshape(batch * height * width, -1)
        matrix = self.weight.permute(0, 2, 3, 1).reshape(self.in_channels, -1)  # C_in×(kh,kw,C)
        columns = (rows @ matrix).view(batch, height * width, KERNEL, KERNEL, self.out_channels)
        columns = columns.permute(0, 4, 2, 3, 1).reshape(batch, -1, height * width)
        out = F.fold(columns, (2 * height, 2 * width), KERNEL, stride=STRIDE, padding=PADDING)
        if self.bias is not None:
            out = out + self.bias[:, None, None]
        return in_layout_of(x, out)


def in_layout_of(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """`out` in x's memory layout, as nn.Conv2d returns it, so the next layers see no change."""
    layout = torch.channels_last if is_channels_last(x) else torch.contiguous_format
    return out.contiguous(memory_format=layout)


def is_channels_last(x: torch.Tensor) -> bool:
    """True when `x` is stored channels-last (a 1×1 map counts as both layouts, so not that)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
