"""The retina against a naive per-sample reference, and tiny cases worked out by hand.

The reference is the retina's documented contract written the slow, obvious way: for each
sample and scale s, crop the S×S patch (S = g·2^s) starting at floor(c - S/2 + 1/2), with
c = (l + 1)/2 · (W, H), reading zero outside the image; then average each 2^s × 2^s block.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ramlab.models.retina import Retina


def reference_glimpse(image: np.ndarray, location: tuple[float, float], g: int, k: int) -> np.ndarray:
    """image (H, W), location (x, y) -> (k·g·g,), scale-major, row-major. Loops only."""
    height, width = image.shape
    cx = (location[0] + 1.0) / 2.0 * width
    cy = (location[1] + 1.0) / 2.0 * height
    out = []
    for s in range(k):
        q = 2**s
        side = g * q
        x0 = math.floor(cx - side / 2 + 0.5)
        y0 = math.floor(cy - side / 2 + 0.5)
        patch = np.zeros((side, side))
        for i in range(side):
            for j in range(side):
                r, c = y0 + i, x0 + j
                if 0 <= r < height and 0 <= c < width:
                    patch[i, j] = image[r, c]
        for i in range(g):
            for j in range(g):
                out.append(patch[i * q : (i + 1) * q, j * q : (j + 1) * q].mean())
    return np.array(out)


def run_retina(images: torch.Tensor, locations: torch.Tensor, g: int, k: int) -> torch.Tensor:
    retina = Retina(glimpse_size=g, scales=k, image_size=tuple(images.shape[2:]))
    return retina.glimpse(retina.prepare(images), locations)


# Locations on the centre, edges and corners, and beyond them.
SPECIAL = [
    (0.0, 0.0),
    (-1.0, -1.0),
    (1.0, 1.0),
    (-1.0, 1.0),
    (1.0, -1.0),
    (1.0, 0.0),
    (0.0, -1.0),
    (-2.0, -2.0),
    (2.0, 2.0),
    (2.0, -2.0),
    (-2.0, 0.5),
    (1.5, 0.0),
    (0.0, -1.25),
    (0.99, -0.99),
]


@pytest.mark.parametrize(
    ("height", "width", "g", "k"),
    [
        (16, 16, 2, 3),
        (13, 21, 3, 2),
        (20, 9, 4, 3),
        (11, 17, 1, 4),
        (10, 14, 5, 1),
        (8, 8, 3, 3),  # the widest patch (12 px) is wider than the image
    ],
)
def test_retina_matches_naive_reference(height: int, width: int, g: int, k: int) -> None:
    gen = torch.Generator().manual_seed(height * 1000 + width * 10 + g + k)
    images = torch.rand(40, 1, height, width, generator=gen)
    random_locations = torch.rand(40 - len(SPECIAL), 2, generator=gen) * 4.0 - 2.0  # |l| up to 2
    locations = torch.cat([torch.tensor(SPECIAL), random_locations])
    out = run_retina(images, locations, g, k)
    assert out.shape == (40, k * g * g)
    assert out.dtype == images.dtype
    for b in range(len(images)):
        expected = reference_glimpse(
            images[b, 0].double().numpy(), tuple(locations[b].double().tolist()), g, k
        )
        np.testing.assert_allclose(out[b].double().numpy(), expected, atol=1e-6, err_msg=f"sample {b}")


def test_far_outside_the_image_is_all_zeros() -> None:
    images = torch.rand(3, 1, 10, 12) + 0.5
    locations = torch.tensor([[3.0, 0.0], [0.0, -3.0], [-5.0, 5.0]])
    out = run_retina(images, locations, 2, 3)
    assert out.shape == (3, 12)
    assert torch.equal(out, torch.zeros(3, 12))


def test_four_by_four_by_hand() -> None:
    image = torch.arange(1.0, 17.0).reshape(1, 1, 4, 4)  # rows 1..4, 5..8, 9..12, 13..16
    locations = torch.tensor(
        [
            [0.0, 0.0],  # centre c = (2, 2)
            [-1.0, -1.0],  # top-left corner c = (0, 0)
            [1.0, -1.0],  # top-right corner c = (4, 0)
            [0.5, 0.0],  # c = (3, 2)
        ]
    )
    out = run_retina(image.expand(4, -1, -1, -1), locations, 2, 2)
    expected = torch.tensor(
        [
            # scale 0: the 2×2 patch from (1, 1); scale 1: the whole image, 2×2 block means
            [6, 7, 10, 11, 3.5, 5.5, 11.5, 13.5],
            # scale 0 starts at (-1, -1): only pixel (0, 0) is inside;
            # scale 1 starts at (-2, -2): only its bottom-right block (1, 2, 5, 6) is inside
            [0, 0, 0, 1, 0, 0, 0, 3.5],
            # scale 0 starts at x = 3, y = -1: pixel (0, 3) = 4 bottom-left;
            # scale 1 starts at x = 2, y = -2: bottom-left block is (3, 4, 7, 8)
            [0, 0, 4, 0, 0, 0, 5.5, 0],
            # scale 0 starts at (2, 1): [[7, 8], [11, 12]];
            # scale 1 starts at x = 1, y = 0: blocks (2,3,6,7), (4,8 + zeros), (10,11,14,15), (12,16 + zeros)
            [7, 8, 11, 12, 4.5, 3.0, 12.5, 7.0],
        ]
    )
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_non_square_by_hand() -> None:
    # H = 2, W = 4: x runs along the 4 columns, y along the 2 rows.
    image = torch.tensor([[[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]]])
    locations = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-0.5, -1.0]])
    out = run_retina(image.expand(3, -1, -1, -1), locations, 1, 2)
    expected = torch.tensor(
        [
            # c = (2, 1): scale 0 is pixel (row 1, col 2) = 7; scale 1 rows 0-1, cols 1-2
            [7.0, (2 + 3 + 6 + 7) / 4],
            # c = (4, 2): scale 0 is outside; scale 1 rows 1-2, cols 3-4: only 8 inside
            [0.0, 8 / 4],
            # c = (1, 0): scale 0 is pixel (row 0, col 1) = 2; scale 1 rows -1-0, cols 0-1
            [2.0, (1 + 2) / 4],
        ]
    )
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_output_size_and_wrong_image_size() -> None:
    retina = Retina(glimpse_size=3, scales=4, image_size=(10, 12))
    assert retina.output_size == 4 * 3 * 3
    with pytest.raises(ValueError, match="10x12"):
        retina.prepare(torch.zeros(2, 1, 12, 10))


def test_glimpses_keep_the_images_dtype() -> None:
    # The tables hold block sums; the glimpse divides by the block's area as it reads, with a
    # constant of the tables' dtype: float64 images stay float64, and agree with float32 ones.
    retina = Retina(glimpse_size=3, scales=3, image_size=(16, 16))
    images = torch.rand(2, 1, 16, 16, dtype=torch.float64)
    location = torch.tensor([[0.1, -0.2], [0.9, 0.9]])
    wide = retina.glimpse(retina.prepare(images), location)
    narrow = retina.glimpse(retina.prepare(images.float()), location)
    assert wide.dtype == torch.float64 and narrow.dtype == torch.float32
    torch.testing.assert_close(wide.float(), narrow)


def test_huge_tables_keep_exact_indices() -> None:
    # Tables of over 2^24 entries: index arithmetic in float32 would round the indices.
    size = (2900, 2900)
    retina = Retina(glimpse_size=2, scales=2, image_size=size)
    assert retina.buffer_size > 2**24
    image = torch.zeros(1, 1, *size)
    image[0, 0, 2890, 2893] = 1.0
    image[0, 0, 2890, 2894] = 3.0  # a neighbour: a rounded index would read it instead
    location = torch.tensor([[2893.5 / 1450 - 1, 2890.5 / 1450 - 1]])  # centre on pixel (2890, 2893)
    out = retina.glimpse(retina.prepare(image), location)
    expected = reference_glimpse(image[0, 0].numpy(), tuple(location[0].double().tolist()), 2, 2)
    np.testing.assert_allclose(out[0].double().numpy(), expected, atol=1e-6)
    assert out[0].sum() > 0  # the patch found the pixels


@pytest.mark.parametrize(("height", "width", "k"), [(60, 60, 3), (13, 21, 4), (100, 100, 4)])
def test_tables_are_the_means_of_four_shifted_means_bit_for_bit(height: int, width: int, k: int) -> None:
    # The recurrence the tables were first built by (and trained runs saw), kept in the
    # benchmark that times it against ramlab's: M_0 the image with a zero border, M_s the mean
    # of four shifted copies of M_{s-1} extended with zeros.
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "retina_tables.py"
    spec = importlib.util.spec_from_file_location("retina_tables", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    images = torch.rand(5, 1, height, width, generator=torch.Generator().manual_seed(k))
    retina = Retina(glimpse_size=2, scales=k, image_size=(height, width))
    expected = benchmark.means_of_shifted_means(images, k)
    assert torch.equal(benchmark.flat_means(retina, retina.prepare(images)), expected)
    # Images that need a gradient take the other way of writing the tables (autograd refuses
    # add's out=): the same tables, bit for bit.
    tables = benchmark.flat_means(retina, retina.prepare(images.clone().requires_grad_()))
    assert tables.requires_grad and torch.equal(tables.detach(), expected)


def test_glimpses_are_differentiable_in_the_images() -> None:
    # At the centre every patch lies inside the image, and the glimpse's values are the means
    # of q×q blocks: each pixel of scale s's patch (side g·q) gets weight 1/q² in their sum, so
    # d(sum of the glimpse)/d(image) sums to k·g² per sample, 1 on each pixel of the smallest patch.
    retina = Retina(glimpse_size=4, scales=3, image_size=(20, 24))
    images = torch.rand(2, 1, 20, 24, requires_grad=True)
    retina.glimpse(retina.prepare(images), torch.zeros(2, 2)).sum().backward()
    assert images.grad.sum(dim=(1, 2, 3)).tolist() == [48.0, 48.0]
    # The centre pixel (12, 10) of the 24x20 image lies in all three patches: 1 + 1/4 + 1/16.
    assert images.grad[0, 0, 10, 12].item() == 1 + 1 / 4 + 1 / 16
