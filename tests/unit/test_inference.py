"""Inference: device choice, the preprocessing saved with a model, batched logits."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from mnist_pipeline.errors import PipelineError
from mnist_pipeline.inference import (
    SHIFTS,
    Preprocessing,
    choose_test_shifts,
    predict_logits,
    rank,
    select_device,
    shift_images,
)
from mnist_pipeline.training import bf16_autocast


@dataclasses.dataclass
class Seen:
    x: torch.Tensor
    training: bool
    inference: bool


class Spy(nn.Module):
    """A linear model that records every input batch and the modes it ran in."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(28 * 28, 10)
        self.seen: list[Seen] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(Seen(x.detach().clone(), self.training, torch.is_inference_mode_enabled()))
        return self.fc(x.flatten(1))


def make_images(n: int, seed: int = 0) -> torch.Tensor:
    """(n, 28, 28) uint8 noise."""
    return torch.randint(
        0, 256, (n, 28, 28), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8
    )


# --- select_device ------------------------------------------------------------------------------------------


def fake_devices(monkeypatch: pytest.MonkeyPatch, cuda: bool, mps: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [
        (True, True, "cuda"),
        (True, False, "cuda"),
        (False, True, "mps"),
        (False, False, "cpu"),
    ],
)
def test_auto_prefers_cuda_then_mps_then_cpu(
    monkeypatch: pytest.MonkeyPatch, cuda: bool, mps: bool, expected: str
) -> None:
    fake_devices(monkeypatch, cuda, mps)
    assert select_device("auto") == torch.device(expected)


@pytest.mark.parametrize("name", ["cpu", "cuda", "mps"])
def test_an_available_device_is_taken_as_named(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    fake_devices(monkeypatch, cuda=True, mps=True)
    assert select_device(name) == torch.device(name)


def test_cpu_needs_no_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_devices(monkeypatch, cuda=False, mps=False)
    assert select_device("cpu") == torch.device("cpu")


def test_an_unavailable_device_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_devices(monkeypatch, cuda=False, mps=False)
    with pytest.raises(PipelineError) as cuda:  # run() prints it as one line and exits 2
        select_device("cuda")
    assert str(cuda.value) == (
        "train.device is 'cuda' but this machine has no CUDA device "
        "(fix: set train.device: auto or cpu in params.yaml)"
    )
    with pytest.raises(PipelineError) as mps:
        select_device("mps")
    assert str(mps.value) == (
        "train.device is 'mps' but this machine has no MPS device "
        "(fix: set train.device: auto or cpu in params.yaml)"
    )
    # each check asks about its own backend only
    fake_devices(monkeypatch, cuda=False, mps=True)
    assert select_device("mps") == torch.device("mps")
    fake_devices(monkeypatch, cuda=True, mps=False)
    assert select_device("cuda") == torch.device("cuda")


@pytest.mark.parametrize("name", ["auto", "cuda", "cpu"])
def test_every_device_choice_makes_float32_ieee(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    fake_devices(monkeypatch, cuda=True, mps=False)
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    before = conv.fp32_precision, matmul.fp32_precision
    try:
        conv.fp32_precision = matmul.fp32_precision = "tf32"  # cuDNN's own default for convolutions
        select_device(name)
        assert (conv.fp32_precision, matmul.fp32_precision) == ("ieee", "ieee")
    finally:
        conv.fp32_precision, matmul.fp32_precision = before


# --- Preprocessing ------------------------------------------------------------------------------------------


def test_input_scales_normalises_and_adds_the_channel() -> None:
    images = torch.tensor([[0, 51, 255], [102, 204, 153]], dtype=torch.uint8).reshape(1, 2, 3)
    x = Preprocessing(0.2, 0.4, False).input(images)
    assert x.shape == (1, 1, 2, 3) and x.dtype == torch.float32 and x.is_contiguous()
    expected = torch.tensor([[[[-0.5, 0.0, 2.0], [0.5, 1.5, 1.0]]]])
    assert torch.allclose(x, expected, atol=1e-6)
    # the caller's uint8 images are left alone
    assert images.tolist() == [[[0, 51, 255], [102, 204, 153]]]


def test_input_in_channels_last_has_the_same_values() -> None:
    images = make_images(3)
    plain, nhwc = (
        Preprocessing(0.1307, 0.3081, False).input(images),
        Preprocessing(0.1307, 0.3081, True).input(images),
    )
    assert nhwc.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(plain, nhwc)


def test_normalise_works_in_place_on_float_images() -> None:
    x = torch.rand(2, 1, 28, 28)
    expected = (x - 0.3) / 0.7
    out = Preprocessing(0.3, 0.7, False).normalise(x)
    assert out.data_ptr() == x.data_ptr() and torch.equal(out, expected)


@pytest.mark.parametrize("channels_last", [True, False])
def test_prepare_puts_the_model_in_the_input_memory_format(channels_last: bool) -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3))
    weight = Preprocessing(0.0, 1.0, channels_last).prepare(model)[1].weight  # (4, 4, 3, 3)
    assert weight.is_contiguous(memory_format=torch.channels_last) is channels_last
    assert weight.is_contiguous() is not channels_last


# --- predict_logits -----------------------------------------------------------------------------------------


def test_predict_logits_batches_in_eval_mode_without_grad() -> None:
    images = make_images(16)
    model = Spy()
    model.train()
    whole = predict_logits(model, images, 1000, Preprocessing(0.2, 0.4, False))
    batched = predict_logits(model, images, 3, Preprocessing(0.2, 0.4, True))
    assert not model.training
    assert whole.shape == (16, 10) and whole.dtype == torch.float32 and whole.device.type == "cpu"
    assert torch.allclose(whole, batched, atol=1e-5)
    assert torch.allclose(whole, model.fc(Preprocessing(0.2, 0.4, False).input(images).flatten(1)), atol=1e-5)
    assert not whole.requires_grad and torch.is_inference(whole)
    assert [s.x.shape[0] for s in model.seen] == [16, 3, 3, 3, 3, 3, 1]
    assert all(not s.training and s.inference for s in model.seen)
    assert torch.allclose(
        torch.cat([s.x for s in model.seen[1:]]), Preprocessing(0.2, 0.4, False).input(images)
    )
    empty = predict_logits(model, images[:0], 3, Preprocessing(0.2, 0.4, False))
    assert empty.shape == (0, 10) and empty.dtype == torch.float32


def test_predict_logits_returns_float32_from_a_bf16_forward() -> None:
    images = make_images(4)
    model = Spy()
    with bf16_autocast(torch.device("cpu"), True):
        logits = predict_logits(model, images, 2, Preprocessing(0.5, 0.5, False))
    assert logits.dtype == torch.float32
    expected = model.fc(Preprocessing(0.5, 0.5, False).input(images).flatten(1))
    assert not torch.equal(logits, expected) and torch.allclose(logits, expected, atol=0.05)


# --- test-time shifts -----------------------------------------------------------------------------------


def test_shift_images_moves_pixels_by_one_and_shifts_in_zeros() -> None:
    images = torch.arange(1, 10, dtype=torch.uint8).reshape(1, 3, 3)  # 1 2 3 / 4 5 6 / 7 8 9
    assert shift_images(images, 0, 0).tolist() == images.tolist()
    assert shift_images(images, 1, 0).tolist() == [[[0, 0, 0], [1, 2, 3], [4, 5, 6]]]  # down
    assert shift_images(images, -1, 0).tolist() == [[[4, 5, 6], [7, 8, 9], [0, 0, 0]]]  # up
    assert shift_images(images, 0, 1).tolist() == [[[0, 1, 2], [0, 4, 5], [0, 7, 8]]]  # right
    assert shift_images(images, 0, -1).tolist() == [[[2, 3, 0], [5, 6, 0], [8, 9, 0]]]  # left
    assert shift_images(images, 1, 0).dtype == torch.uint8
    assert sorted(SHIFTS) == [(-1, 0), (0, -1), (0, 0), (0, 1), (1, 0)]


def test_shifted_prediction_is_the_log_of_the_mean_softmax_over_the_five_views() -> None:
    images = make_images(7)
    model = Spy()
    preprocessing = Preprocessing(0.2, 0.4, False)
    got = predict_logits(model, images, 3, preprocessing, test_shifts=True)
    views = [torch.roll(images, shifts=s, dims=(1, 2)) for s in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))]
    for view, (dy, dx) in zip(views[1:], SHIFTS[1:], strict=True):  # roll wraps around: blank the edge
        view[:, 0 if dy == 1 else -1, :] = 0 if dy else view[:, 0 if dy == 1 else -1, :]
        view[:, :, 0 if dx == 1 else -1] = 0 if dx else view[:, :, 0 if dx == 1 else -1]
    with torch.no_grad():
        probs = torch.stack([model.fc(preprocessing.input(v).flatten(1)).softmax(1) for v in views])
    assert got.shape == (7, 10) and got.dtype == torch.float32
    assert torch.allclose(got, probs.mean(0).log(), atol=1e-5)
    assert torch.allclose(got.exp().sum(1), torch.ones(7), atol=1e-5)  # log-probabilities
    assert len(model.seen) == 5 * 3  # five views of each of the three batches


class Fixed(nn.Module):
    """Returns preset logits for the unshifted images and others for every shifted view."""

    def __init__(self, plain: torch.Tensor, shifted: torch.Tensor, images: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.plain, self.shifted, self.images = plain, shifted, Preprocessing(0, 1, False).input(images)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.plain if torch.equal(x, self.images) else self.shifted


def fixed_model(
    plain_right: int, shifted_right: int, shifted_margin: float = 5.0
) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A model of 10 val images right `plain_right` times plain and `shifted_right` times shifted."""
    labels = torch.zeros(10, dtype=torch.long)
    plain = torch.zeros(10, 10)
    plain[torch.arange(10), torch.where(torch.arange(10) < plain_right, 0, 1)] = 5.0
    shifted = torch.zeros(10, 10)
    shifted[torch.arange(10), torch.where(torch.arange(10) < shifted_right, 0, 1)] = shifted_margin
    images = make_images(10)
    return Fixed(plain, shifted, images), images, labels


@pytest.mark.parametrize(
    ("plain_right", "shifted_right", "margin", "expected"),
    [
        (8, 9, 5.0, True),  # more right with shifts
        (9, 8, 5.0, False),  # fewer
        (9, 9, 5.0, False),  # a tie in accuracy and loss keeps the cheaper plain pass
        (10, 10, 6.0, True),  # a tie in accuracy, surer of the right answers with shifts: lower loss
        (10, 10, 4.0, False),  # a tie in accuracy, higher loss with shifts
    ],
)
def test_auto_shifts_only_when_val_scores_better(
    plain_right: int, shifted_right: int, margin: float, expected: bool
) -> None:
    model, images, labels = fixed_model(plain_right, shifted_right, margin)
    shifted, scores = choose_test_shifts(model, "auto", images, labels, 10, Preprocessing(0, 1, False))
    assert shifted is expected
    assert scores["plain"]["accuracy"] == pytest.approx(plain_right / 10)
    assert scores["shifted"]["accuracy"] == pytest.approx(shifted_right / 10)


@pytest.mark.parametrize(("setting", "expected"), [("always", True), ("never", False)])
def test_a_fixed_shift_setting_is_kept_and_scored_its_one_way(setting: str, expected: bool) -> None:
    model, images, labels = fixed_model(9, 2)
    shifted, scores = choose_test_shifts(model, setting, images, labels, 10, Preprocessing(0, 1, False))
    assert shifted is expected and list(scores) == ["shifted" if expected else "plain"]
    assert scores[list(scores)[0]]["accuracy"] == pytest.approx(0.2 if expected else 0.9)


def test_choices_rank_by_accuracy_then_lower_loss() -> None:
    scores = [(0.98, 0.05), (0.99, 0.30), (0.99, 0.20), (0.97, 0.01)]
    assert max(scores, key=lambda s: rank(*s)) == (0.99, 0.20)
    assert sorted(scores, key=lambda s: rank(*s)) == [(0.97, 0.01), (0.98, 0.05), (0.99, 0.30), (0.99, 0.20)]
