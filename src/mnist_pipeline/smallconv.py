"""Conv2d that computes convolutions on tiny maps (at most 2x2) as one dense GEMM over the whole map.

ResNet18 on 28x28 MNIST runs layer3 on 2x2 and layer4 on 1x1 maps. There oneDNN's CPU kernels are
at their worst: the weight gradient is computed image by image, each a GEMM with K = H*W = 1..4
(the 3x3 512->512 one took 161-165 ms per call at batch 128 on a 2-core AMD EPYC Zen 3, 65x a
GEMM of the same sums), and every kernel spends most of its time on taps that fall in the zero padding.
On a map of at most 2x2 every output pixel sees every input pixel through some tap, so the
convolution is exactly a dense layer from (H*W*C) inputs to (OH*OW*O) outputs whose matrix holds
the kernel's taps at the right places (zeros where a pair of pixels is out of the kernel's reach).
Forward, input gradient and weight gradient then are one GEMM each, through autograd. Measurements:
docs/speed.md.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

# Input maps of at most this many pixels take the dense path (2x2: ResNet18's layer3 and layer4).
# On 2x2 the dense matrix does 4x4 pixel pairs of work where the 3x3 kernel does 2x2x9; on 4x4 maps
# (16x16 pairs against 4x4x9) it would do more work than the convolution.
MAX_INPUT_PIXELS = 4


@functools.cache
def tap_index(
    in_hw: tuple[int, int],
    out_hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> torch.Tensor:
    """(OH*OW*H*W,) kernel tap linking each (output pixel, input pixel) pair; kh*kw where none does."""
    (h, w), (oh, ow), (kh, kw), (sh, sw), (ph, pw) = in_hw, out_hw, kernel, stride, padding
    index = []
    for r in range(oh):
        for q in range(ow):
            for i in range(h):
                for j in range(w):
                    ti, tj = i - r * sh + ph, j - q * sw + pw  # tap of the kernel placed at output (r, q)
                    index.append(ti * kw + tj if 0 <= ti < kh and 0 <= tj < kw else kh * kw)
    return torch.tensor(index)


@functools.cache
def tap_picker(
    in_hw: tuple[int, int],
    out_hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> torch.Tensor:
    """(OH*OW*H*W, kh*kw) float32 one-hot rows picking each pixel pair's tap; zero rows where none reaches."""
    (kh, kw) = kernel
    return F.one_hot(tap_index(in_hw, out_hw, kernel, stride, padding), kh * kw + 1)[:, : kh * kw].float()


def dense_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> torch.Tensor:
    """F.conv2d(x, weight, bias, stride, padding) as one GEMM; x (N, C, H, W), output (N, O, OH, OW)."""
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    oh, ow = (h + 2 * padding[0] - kh) // stride[0] + 1, (w + 2 * padding[1] - kw) // stride[1] + 1
    index = tap_index((h, w), (oh, ow), (kh, kw), stride, padding)
    taps = weight.permute(0, 2, 3, 1).reshape(o, kh * kw, c)  # (O, T, C); a view of a channels_last weight
    if len(index) == 1 and index[0] < kh * kw:  # 1x1 map: only the centre tap reaches, a slice (no copy)
        taps = taps.narrow(1, int(index[0]), 1)
    else:
        # (P, T) one-hot rows pick each pair's tap (zero rows: out of reach); as a matmul, its gradient is a
        # matmul too, where indexing would scatter with index_put, slow under use_deterministic_algorithms.
        pick = tap_picker((h, w), (oh, ow), (kh, kw), stride, padding).to(taps.dtype)
        taps = torch.matmul(pick, taps)  # (O, P, C), P = OH*OW*H*W pixel pairs
    dense = taps.reshape(o, oh * ow, h * w * c).transpose(0, 1).reshape(oh * ow * o, h * w * c)
    rows = x.permute(0, 2, 3, 1).reshape(n, h * w * c)  # (N, H*W*C); a view of a channels_last x
    y = rows_times(rows, dense, None if bias is None else bias.repeat(oh * ow))  # (N, OH*OW*O)
    return y.reshape(n, oh, ow, o).permute(0, 3, 1, 2)  # (N, O, OH, OW), channels_last strides


def rows_times(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """F.linear(rows, weight, bias): (N, K) x (M, K) → (N, M), as a 1x1 convolution over an N x 1 image.

    The GEMM goes to oneDNN instead of MKL: under numerics: portable MKL runs its COMPATIBLE branch,
    which ran these shapes (fwd + bwd, N = 128) at 62-70 GFLOP/s against oneDNN's AVX2 kernels' 70-93 on
    a 2-core EPYC Zen 4. The rows become the image's pixels, so the weight gradient is one reduction
    over them, not N rank-1 updates (oneDNN's pathology on 1x1 maps above).
    """
    n, k = rows.shape
    m = weight.shape[0]
    image = rows.reshape(1, n, 1, k).permute(0, 3, 1, 2)  # (1, K, N, 1) channels_last: a view
    out = F.conv2d(image, weight.reshape(m, k, 1, 1), bias)  # (1, M, N, 1), channels_last
    return out.permute(0, 2, 3, 1).reshape(n, m)


class SmallMapConv2d(nn.Conv2d):
    """nn.Conv2d (same parameters and state_dict) that runs on the CPU as a dense GEMM on tiny maps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.device.type == "cpu"
            and x.shape[-2] * x.shape[-1] <= MAX_INPUT_PIXELS
            and self.groups == 1
            and self.dilation == (1, 1)
            and self.padding_mode == "zeros"
            and isinstance(self.padding, tuple)
            and all(
                size + 2 * pad >= k
                for size, pad, k in zip(x.shape[-2:], self.padding, self.kernel_size, strict=True)
            )
        ):
            return dense_conv2d(x, self.weight, self.bias, self.stride, self.padding)
        return super().forward(x)


def use_dense_small_maps(model: nn.Module) -> nn.Module:
    """Turn every plain nn.Conv2d of model into a SmallMapConv2d in place; weights are untouched."""
    for module in model.modules():
        if type(module) is nn.Conv2d:
            module.__class__ = SmallMapConv2d
    return model


def use_stock_convs(model: nn.Module) -> nn.Module:
    """Undo use_dense_small_maps: each SmallMapConv2d back to nn.Conv2d, in place (PyTorch's own kernels)."""
    for module in model.modules():
        if type(module) is SmallMapConv2d:
            module.__class__ = nn.Conv2d
    return model
