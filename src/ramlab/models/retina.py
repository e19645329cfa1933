"""The glimpse sensor (retina): k square patches centred on a location, each twice as wide.

    rho(x, l) = [ area-average_{2^s}( crop(x, l, g * 2^s) ) for s in 0..k-1 ]   (B, k, g, g)

Location l = (x, y) in [-1, 1]^2, (0, 0) the image centre, (-1, -1) the top-left corner,
so the patch centre in pixels is c = (l + 1) / 2 * (W, H), and a patch of side S starts at
the integer pixel floor(c - S / 2 + 1/2). Pixels outside the image are zero, for any
location, inside the image or beyond it; images may be non-square.

For speed the work is split. `prepare` runs once per batch: for each scale s it builds the
table M_s[r, c] = mean of the q×q block (q = 2^s) whose top-left pixel is (r, c), for every
r in [-q, H] and c in [-q, W] (the outermost rows and columns are blocks wholly outside the
image, hence zero). They come from the image with a zero border as block sums, those of
the 2^s blocks from four shifted sums of the 2^(s-1) blocks, each table written once into
its part of one buffer (bit for bit the means of four shifted means: the scalings by powers
of 2 are exact). `glimpse` then needs one `gather` of k·g² values per sample: output pixel
(i, j) of scale s is M_s[clamp(y0 + i q), clamp(x0 + j q)], the clamp sending every block
beyond the edge to a zero one. No Python loop over samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Pyramid:
    """The batch's block-mean tables of every scale, flattened into one buffer."""

    flat: torch.Tensor  # (B, N)
    height: int
    width: int


class Retina:
    """Extracts glimpses; holds no parameters (the sensor is not learned). Its ops are
    differentiable in the images, though nothing in the RAM asks for that gradient."""

    def __init__(self, *, glimpse_size: int, scales: int, image_size: tuple[int, int]) -> None:
        if glimpse_size < 1 or scales < 1:
            raise ValueError("glimpse_size and scales must be positive")
        self.glimpse_size = glimpse_size
        self.scales = scales
        self.height, self.width = h, w = image_size
        g = glimpse_size
        q = torch.tensor([2**s for s in range(scales)])  # block side per scale
        rows, cols = h + q + 1, w + q + 1  # table shape per scale
        base = torch.cumsum(rows * cols, 0) - rows * cols
        steps = torch.arange(g)[None, :] * q[:, None]  # (k, g): block offsets inside a patch
        self._consts = {
            "half_size": torch.tensor([w / 2, h / 2]),  # (2,) as (x, y)
            "corner_shift": (g * q).float() * 0.5 - 0.5,  # (k,): S/2 - 1/2
            "steps": steps.float(),  # (k, g)
            "low": -q[:, None].float(),  # (k, 1)
            "high": torch.tensor([float(w), float(h)])[:, None, None],  # (2, 1, 1) as (x, y)
            "row_stride": cols[:, None].float(),  # (k, 1)
            "base": (base + q * cols + q)[:, None].float(),  # (k, 1): flat index of (0, 0)
        }
        self.buffer_size = int((rows * cols).sum())
        # The index arithmetic runs in floating point; float32 holds integers exactly to 2^24.
        exact = torch.float32 if self.buffer_size < 2**24 else torch.float64
        self._consts = {k: v.to(exact) for k, v in self._consts.items()}
        self._cache: dict[torch.device, dict[str, torch.Tensor]] = {}

    @property
    def output_size(self) -> int:
        return self.scales * self.glimpse_size**2

    def _constants(self, device: torch.device) -> dict[str, torch.Tensor]:
        if device not in self._cache:
            self._cache[device] = {k: v.to(device) for k, v in self._consts.items()}
        return self._cache[device]

    def prepare(self, images: torch.Tensor) -> Pyramid:
        """images (B, 1, H, W) -> the block-mean tables (channel 0: scenes are grey)."""
        b, _, h, w = images.shape
        if (h, w) != (self.height, self.width):
            raise ValueError(f"retina built for {self.height}x{self.width} images, got {h}x{w}")
        differentiable = torch.is_grad_enabled() and images.requires_grad
        pad = 2 ** (self.scales - 1)  # the widest block's side
        sums = F.pad(images[:, 0], (pad, pad, pad, pad))  # the image with a zero border
        flat = images.new_empty(b, self.buffer_size)
        offset = 0
        for s in range(self.scales):
            q = 2**s
            if s:  # sums of q×q blocks from those of (q/2)×(q/2): separable, columns then rows
                half = q // 2
                pairs = sums[:, :, :-half] + sums[:, :, half:]
                sums = pairs[:, :-half] + pairs[:, half:]
            rows, cols = h + q + 1, w + q + 1  # M_s over [-q, H] x [-q, W]
            table = flat[:, offset : offset + rows * cols].view(b, rows, cols)
            block_sums = sums[:, pad - q : pad - q + rows, pad - q : pad - q + cols]
            # Written into its part of the buffer; q² a power of 2, so the mean is exact.
            if differentiable:  # autograd refuses mul's out=; copy_ and mul_ it records
                table.copy_(block_sums).mul_(1.0 / q**2)
            else:  # one kernel a table, not two. (Traced by torch.compile, copy_ and mul_
                # into the buffer's views became slow code: the compiled paper RAM fell to 44%
                # of its matrix-products bound in inference; README. The fast path now builds
                # the tables eagerly, outside its graph: RAM.sense.)
                torch.mul(block_sums, 1.0 / q**2, out=table)
            offset += rows * cols
        return Pyramid(flat=flat, height=h, width=w)

    def glimpse(self, pyramid: Pyramid, location: torch.Tensor) -> torch.Tensor:
        """location (B, 2) as (x, y) -> glimpse (B, k·g·g), scale-major, row-major."""
        c = self._constants(location.device)
        b = len(location)
        centre = torch.addcmul(c["half_size"], location, c["half_size"])  # (B, 2) pixels: (l + 1) W / 2
        # A NaN location (weights gone NaN) must not become an index: it reads the corner, and
        # the loss, NaN as well, stops training with ramlab's message.
        centre = centre.nan_to_num_(nan=0.0)
        corner = torch.floor(centre[:, :, None] - c["corner_shift"])  # (B, 2, k) patch corner per scale
        # Block starts along x and y, clamped so that blocks past an edge read a zero block.
        starts = torch.add(corner[..., None], c["steps"]).clamp_(min=c["low"], max=c["high"])  # (B, 2, k, g)
        rows = torch.addcmul(c["base"], starts[:, 1], c["row_stride"])  # (B, k, g) flat row starts
        index = torch.add(rows[:, :, :, None], starts[:, 0, :, None, :]).long()  # (B, k, g, g)
        return torch.gather(pyramid.flat, 1, index.view(b, -1))
