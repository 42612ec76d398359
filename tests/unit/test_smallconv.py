"""SmallMapConv2d: the dense GEMM equals F.conv2d, forward and every gradient,
on every convolution resnet18 runs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnist_pipeline import smallconv
from mnist_pipeline.architectures.resnet18 import resnet18
from mnist_pipeline.smallconv import SmallMapConv2d, use_dense_small_maps, use_stock_convs


def resnet18_convs() -> list[tuple[int, int, int, int, int, int]]:
    """(in, out, kernel, stride, padding, input size) of every distinct Conv2d call of resnet18 on 28x28."""
    model, seen = resnet18(), []

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        seen.append(
            (
                module.in_channels,
                module.out_channels,
                module.kernel_size[0],
                module.stride[0],
                module.padding[0],
                inputs[0].shape[-1],
            )
        )

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_pre_hook(record)
    with torch.no_grad():
        model(torch.zeros(2, 1, 28, 28))
    return sorted(set(seen))


CONVS = resnet18_convs()


def test_resnet18_convs_include_the_tiny_maps() -> None:
    sizes = {size for *_, size in CONVS}
    assert {28, 7, 4, 2, 1} <= sizes  # stem, layer1, layer2, layer3, layer4
    assert len(CONVS) >= 10


def test_the_dense_path_multiplies_no_padding_on_resnet18s_tiny_maps() -> None:
    # Each (output pixel, input pixel) pair of the dense matrix is one tap that touches the image: on
    # layer3's and layer4's maps every pair is within reach, so the GEMM does exactly the useful taps
    # (16 of the 36 a 3x3 kernel does on a 2x2 map; 4 of 9 at stride 2; 1 of 9 on a 1x1 map).
    for _, _, k, stride, pad, size in CONVS:
        if size > smallconv.MAX_INPUT_PIXELS**0.5 or k == 1:
            continue
        out = (size + 2 * pad - k) // stride + 1
        index = smallconv.tap_index((size, size), (out, out), (k, k), (stride, stride), (pad, pad))
        useful = sum(
            1
            for r in range(out)
            for q in range(out)
            for i in range(k)
            for j in range(k)
            if 0 <= r * stride + i - pad < size and 0 <= q * stride + j - pad < size
        )
        assert (index < k * k).all(), (size, stride)  # no pair out of reach: no zero in the matrix
        assert len(index) == useful  # pairs computed == taps on the image, per (in, out) channel pair


def dense_taken(y: torch.Tensor) -> bool:
    """Whether y came out of dense_conv2d (its last step permutes the GEMM's rows to (N, O, OH, OW))."""
    return type(y.grad_fn).__name__ == "PermuteBackward0"


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("conv", CONVS, ids=lambda c: "in{}-out{}-k{}-s{}-p{}-{}px".format(*c))
def test_forward_and_every_gradient_match_conv2d(conv: tuple[int, ...], channels_last: bool) -> None:
    c_in, c_out, k, stride, padding, size = conv
    generator = torch.Generator().manual_seed(sum(conv))
    # Channel counts cut to 1/8 (>= 1) keep the test fast; map sizes, kernels and strides are resnet18's.
    c_in, c_out = max(1, c_in // 8), max(1, c_out // 8)
    x = torch.randn(5, c_in, size, size, generator=generator, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    fast = SmallMapConv2d(c_in, c_out, k, stride, padding, bias=True, dtype=torch.float64)
    stock = nn.Conv2d(c_in, c_out, k, stride, padding, bias=True, dtype=torch.float64)
    stock.load_state_dict(fast.state_dict())
    x_fast, x_stock = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_fast, y_stock = fast(x_fast), stock(x_stock)
    assert dense_taken(y_fast) == (size * size <= smallconv.MAX_INPUT_PIXELS)
    assert dense_taken(y_fast) == (size <= 2)  # layer3 and layer4 of resnet18
    grad = torch.randn(y_stock.shape, generator=generator, dtype=torch.float64)
    y_fast.backward(grad)
    y_stock.backward(grad)
    torch.testing.assert_close(y_fast, y_stock, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x_fast.grad, x_stock.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fast.weight.grad, stock.weight.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fast.bias.grad, stock.bias.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "shape",
    [(3, 5, 3, 2, 1, 3), (3, 5, 5, 1, 2, 2), (4, 6, 3, 1, 0, 3), (2, 3, 3, 3, 1, 4)],
    ids=["odd-map-stride2", "5x5-kernel", "no-padding", "stride3"],
)
def test_shapes_beyond_resnet18_match_too(shape: tuple[int, ...]) -> None:
    """dense_conv2d is exact for any kernel, stride and padding (SmallMapConv2d only sends it maps <= 2x2)."""
    c_in, c_out, k, stride, padding, size = shape
    x = torch.randn(4, c_in, size, size, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(c_out, c_in, k, k, dtype=torch.float64, requires_grad=True)
    y = smallconv.dense_conv2d(x, weight, None, (stride, stride), (padding, padding))
    expected = F.conv2d(x, weight, None, stride, padding)
    grad = torch.randn_like(expected)
    got = torch.autograd.grad(y, (x, weight), grad)
    want = torch.autograd.grad(expected, (x, weight), grad)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_stock_path_on_larger_maps() -> None:
    conv = SmallMapConv2d(4, 4, 3, padding=1)
    tiny, large = torch.randn(2, 4, 2, 2), torch.randn(2, 4, 3, 3)
    assert dense_taken(conv(tiny))
    assert not dense_taken(conv(large))
    with pytest.raises(RuntimeError, match="Kernel size can't be greater than actual input size"):
        SmallMapConv2d(4, 4, 3)(tiny)  # a kernel larger than the padded map: PyTorch's own error


def test_resnet18_is_torchvisions_with_the_same_parameters_and_gradients() -> None:
    from torchvision.models import resnet18 as torchvision_resnet18

    torch.manual_seed(3)
    ours = resnet18().double()
    torch.manual_seed(3)
    stock = torchvision_resnet18(weights=None, num_classes=10)
    stock.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    stock = stock.double()
    assert [type(m).__name__ for m in ours.modules()].count("SmallMapConv2d") == 20  # every conv of resnet18
    assert not any(type(m) is nn.Conv2d for m in ours.modules())
    assert ours.state_dict().keys() == stock.state_dict().keys()
    for key, value in stock.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], value, rtol=0, atol=0)
    x = torch.randn(6, 1, 28, 28, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (6,))
    for model in (ours, stock):
        model.to(memory_format=torch.channels_last)
        F.cross_entropy(model(x), y).backward()
    for (name, p), q in zip(ours.named_parameters(), stock.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-12, msg=name)


def test_use_dense_small_maps_keeps_weights_and_leaves_subclasses_alone() -> None:
    class Custom(nn.Conv2d):
        pass

    model = nn.Sequential(nn.Conv2d(1, 2, 3), Custom(2, 2, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    use_dense_small_maps(model)
    assert type(model[0]) is SmallMapConv2d and type(model[1]) is Custom
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def test_use_stock_convs_undoes_it_and_leaves_other_convs_alone() -> None:
    class Custom(nn.Conv2d):
        pass

    model = use_dense_small_maps(nn.Sequential(nn.Conv2d(1, 2, 3), Custom(2, 2, 3)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert use_stock_convs(model) is model
    assert type(model[0]) is nn.Conv2d and type(model[1]) is Custom
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())


def test_the_pick_matrix_is_built_once_per_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    one_hot = F.one_hot
    monkeypatch.setattr(smallconv.F, "one_hot", lambda *args: calls.append(1) or one_hot(*args))
    smallconv.tap_picker.cache_clear()
    x, weight = torch.randn(2, 3, 2, 2), torch.randn(4, 3, 3, 3)
    first = smallconv.dense_conv2d(x, weight, None, (1, 1), (1, 1))
    assert len(calls) == 1
    again = smallconv.dense_conv2d(x, weight, None, (1, 1), (1, 1))  # the same shape: the cached matrix
    assert len(calls) == 1 and torch.equal(again, first)
    smallconv.dense_conv2d(torch.randn(2, 3, 2, 2), weight, None, (2, 2), (1, 1))  # a new stride: a new one
    assert len(calls) == 2
