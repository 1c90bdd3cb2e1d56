"""The fused training batch (`prepare_batch`, `TrainBatches`) against the step-by-step definition.

`reference` is the augmentation and normalisation written one operation at a time (the
trainer's code before the passes were fused); the fused paths must equal it within float
rounding for the same generator state.
"""

from __future__ import annotations

import pytest
import torch

from hpo.train import augment, normalise
from hpo.train._augment import MEAN, STD, _draws, _prepare_on_device, prepare_batch
from hpo.train._loop import TrainBatches

TOL = 1e-5  # normalised values lie in about [-2.2, 2.7]; float32 rounding is ~1e-6 here


def reference_normalise(images: torch.Tensor) -> torch.Tensor:
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def reference_augment(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n, _, h, w = images.shape

    def rand(k: int) -> torch.Tensor:
        return torch.rand((k,), generator=gen)

    pad = max(1, h // 8)
    oy = (rand(n) * (2 * pad + 1)).long() - pad
    ox = (rand(n) * (2 * pad + 1)).long() - pad
    rows = (oy[:, None] + torch.arange(h)).clamp(0, h - 1)
    cols = (ox[:, None] + torch.arange(w)).clamp(0, w - 1)
    flip = rand(n) < 0.5
    cols = torch.where(flip[:, None], w - 1 - cols, cols)
    x = images[
        torch.arange(n)[:, None, None, None],
        torch.arange(3)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]
    x = x.float() / 255.0
    grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).mean(dim=(1, 2)).view(n, 1, 1, 1)
    contrast = (0.9 + 0.2 * rand(n)).view(n, 1, 1, 1)
    brightness = (0.9 + 0.2 * rand(n)).view(n, 1, 1, 1)
    return (((x - grey) * contrast + grey) * brightness).clamp(0, 1)


def random_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen)
    images[: n // 4] = 255 - images[: n // 4] // 8  # bright images: brightness > 1 clamps them
    return images


@pytest.mark.parametrize("size", [9, 32, 57])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_augmented_batch_equals_the_step_by_step_definition(size, seed):
    images = random_images(40, size, seed)
    idx = torch.randint(0, 40, (24,), generator=torch.Generator().manual_seed(seed))  # repeats
    want = reference_normalise(reference_augment(images[idx], torch.Generator().manual_seed(seed)))
    got = prepare_batch(images, idx, torch.Generator().manual_seed(seed))
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert (got - want).abs().max() <= TOL
    # every shift and flip of the draw was exercised: the comparison covers the borders
    oy, ox, flip, _, _ = _draws(24, size, torch.Generator().manual_seed(seed), images.device)
    assert flip.any() and (~flip).any() and (oy < 0).any() and (ox > 0).any()


def test_unnormalised_augment_equals_the_definition_and_stays_in_unit_range():
    images = random_images(16, 32, 3)
    want = reference_augment(images, torch.Generator().manual_seed(3))
    got = augment(images, torch.Generator().manual_seed(3))
    assert (got - want).abs().max() <= 1e-6
    assert got.min() >= 0.0 and got.max() <= 1.0


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_normalise_equals_the_definition(dtype):
    images = random_images(8, 32, 4)
    if dtype == torch.float32:
        images = images.float() / 255.0
    assert (normalise(images) - reference_normalise(images)).abs().max() <= TOL


def test_plain_batch_reads_the_rows_and_fills_the_buffer_given():
    images = random_images(30, 24, 5)
    idx = torch.tensor([3, 3, 29, 0, 7])
    out = torch.empty(5, 3, 24, 24)
    got = prepare_batch(images, idx, augment=False, out=out)
    assert got.data_ptr() == out.data_ptr()
    assert (got - reference_normalise(images[idx])).abs().max() <= TOL


@pytest.mark.parametrize("augmented", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_whole_batch_path_equals_the_definition(augmented, channels_last):
    """The path a GPU batch takes (here on the CPU): gathered rows, whole-batch passes."""
    images = random_images(12, 32, 6)
    gen = torch.Generator().manual_seed(6)
    draws = _draws(12, 32, gen, images.device) if augmented else None
    got = _prepare_on_device(images, draws, True, None, channels_last)
    want = reference_augment(images, torch.Generator().manual_seed(6)) if augmented else images
    assert (got - reference_normalise(want)).abs().max() <= TOL
    assert got.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_train_batches_reuse_two_buffers_and_keep_the_trainers_draws():
    images = random_images(50, 16, 7)
    labels = torch.arange(50)
    gen = torch.Generator().manual_seed(7)
    batches = TrainBatches(images, labels, 8, torch.device("cpu"), augment_gen=gen)
    ref_gen = torch.Generator().manual_seed(7)
    order = torch.randperm(50, generator=torch.Generator().manual_seed(0))
    taken = []
    for step in range(3):
        idx = order[step * 8 : (step + 1) * 8]
        x, y = batches.take(idx)
        want = reference_normalise(reference_augment(images[idx], ref_gen))
        assert (x - want).abs().max() <= TOL and torch.equal(y, labels[idx])
        taken.append((x, x.clone()))
    assert taken[0][0].data_ptr() == taken[2][0].data_ptr() != taken[1][0].data_ptr()
    assert torch.equal(taken[1][0], taken[1][1])  # intact after the next batch was taken
