"""The glimpse sensor (retina): k square patches centred on a location, each twice as wide.

    rho(x, l) = [ area-average_{2^s}( crop(x, l, g * 2^s) ) for s in 0..k-1 ]   (B, k, g, g)

Location l = (x, y) in [-1, 1]^2, (0, 0) the image centre, (-1, -1) the top-left corner,
so the patch centre in pixels is c = (l + 1) / 2 * (W, H), and a patch of side S starts at
the integer pixel floor(c - S / 2 + 1/2). Pixels outside the image are zero, for any
location, inside the image or beyond it; images may be non-square.

For speed the work is split. `prepare` runs once per batch: for each scale s it builds the
table S_s[r, c] = sum of the q×q block (q = 2^s) whose top-left pixel is (r, c), for every
r in [-p, H + p - q] and c in [-p, W + p - q], with p = 2^(k-1) the widest block's side
(blocks wholly outside the image are zero). S_0 is the image with a zero border of p pixels,
written into the first part of one buffer; S_s is the sum of four shifted copies of S_{s-1}
(separable: columns, then rows), its second add written straight into its part of the buffer.
`glimpse` then needs one `gather` of k·g² values per sample: output pixel (i, j) of scale s
is S_s[clamp(y0 + i q), clamp(x0 + j q)] / q², the clamp to [-q, H] sending every block beyond
the edge to a zero one, and the division, by a power of 2, exact (so the glimpse is bit for
bit the block mean; `Retina.mean_tables` gives the tables as means). No Python loop over
samples, and no pass over the tables only to scale them: in the compiled step the division
is one multiply inside the gather's kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Pyramid:
    """The batch's block-sum tables of every scale, flattened into one buffer."""

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
        self.border = pad = 2 ** (scales - 1)  # p: the widest block's side
        q = torch.tensor([2**s for s in range(scales)])  # block side per scale
        self.table_shapes = [(h + 2 * pad - int(v) + 1, w + 2 * pad - int(v) + 1) for v in q]
        rows, cols = (torch.tensor(side) for side in zip(*self.table_shapes, strict=True))
        base = torch.cumsum(rows * cols, 0) - rows * cols
        steps = torch.arange(g)[None, :] * q[:, None]  # (k, g): block offsets inside a patch
        self._consts = {
            "half_size": torch.tensor([w / 2, h / 2]),  # (2,) as (x, y)
            "corner_shift": (g * q).float() * 0.5 - 0.5,  # (k,): S/2 - 1/2
            "steps": steps.float(),  # (k, g)
            "low": -q[:, None].float(),  # (k, 1)
            "high": torch.tensor([float(w), float(h)])[:, None, None],  # (2, 1, 1) as (x, y)
            "row_stride": cols[:, None].float(),  # (k, 1)
            "base": (base + pad * cols + pad)[:, None].float(),  # (k, 1): flat index of (0, 0)
        }
        self._offsets = [int(v) for v in base]  # where each scale's table starts in the buffer
        self.buffer_size = int((rows * cols).sum())
        # The index arithmetic runs in floating point; float32 holds integers exactly to 2^24.
        exact = torch.float32 if self.buffer_size < 2**24 else torch.float64
        self._consts = {k: v.to(exact) for k, v in self._consts.items()}
        # (k, 1, 1): 1/q², a power of 2, so the glimpse's division by the block's area is exact
        self._consts["inverse_area"] = (1.0 / q.double() ** 2)[:, None, None].float()
        self._cache: dict[torch.device, dict[str, torch.Tensor]] = {}

    @property
    def output_size(self) -> int:
        return self.scales * self.glimpse_size**2

    def _constants(self, device: torch.device) -> dict[str, torch.Tensor]:
        if device not in self._cache:
            self._cache[device] = {k: v.to(device) for k, v in self._consts.items()}
        return self._cache[device]

    def prepare(self, images: torch.Tensor) -> Pyramid:
        """images (B, 1, H, W) -> the block-sum tables (channel 0: scenes are grey)."""
        b, _, h, w = images.shape
        if (h, w) != (self.height, self.width):
            raise ValueError(f"retina built for {self.height}x{self.width} images, got {h}x{w}")
        # The glimpses' constants on the images' device, made here (eagerly, as `sense` runs)
        # rather than on the first glimpse: inside a compiled graph that first build changed
        # the cache the graph's guards check, and every compiled run compiled twice.
        self._constants(images.device)
        differentiable = torch.is_grad_enabled() and images.requires_grad
        p = self.border
        flat = images.new_empty(b, self.buffer_size)
        # S_0: the image inside a zero border, written in place (no padded copy to copy again).
        # One contiguous zero_ under the copy is quicker than zeroing the four borders (the
        # sides are p floats a row), even though it writes the interior twice.
        first = self._view(flat, 0)
        first.zero_()
        first[:, p:-p, p:-p].copy_(images[:, 0])
        for s in range(1, self.scales):  # S_s from four shifted copies of S_{s-1}
            # (Views taken after the writes before them: autograd needs that when it records.)
            half, previous, table = 2 ** (s - 1), self._view(flat, s - 1), self._view(flat, s)
            pairs = previous[:, :, :-half] + previous[:, :, half:]
            if differentiable:  # autograd refuses add's out=; copy_ it records
                table.copy_(pairs[:, :-half] + pairs[:, half:])
            else:  # one kernel, no temporary
                torch.add(pairs[:, :-half], pairs[:, half:], out=table)
        return Pyramid(flat=flat, height=h, width=w)

    def _view(self, flat: torch.Tensor, scale: int) -> torch.Tensor:
        """The buffer's table of one scale, a (B, rows, cols) view."""
        offset, (rows, cols) = self._offsets[scale], self.table_shapes[scale]
        return flat[:, offset : offset + rows * cols].view(len(flat), rows, cols)

    def mean_tables(self, pyramid: Pyramid) -> list[torch.Tensor]:
        """The block means M_s[r, c] over r in [-q, H], c in [-q, W] (q = 2^s), one (B, H + q + 1,
        W + q + 1) tensor a scale: what the glimpse's pixels are read from."""
        p, h, w = self.border, self.height, self.width
        return [
            self._view(pyramid.flat, s)[:, p - 2**s : p + h + 1, p - 2**s : p + w + 1] * (1.0 / 4**s)
            for s in range(self.scales)
        ]

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
        # Scaled as (B, k, g, g), the shape the index was built in: compiled, the gather's kernel
        # then loops over rows and columns and vectorises along them (over k·g² in one flat loop
        # it needed a division and a remainder per pixel and stayed scalar: slower).
        sums = torch.gather(pyramid.flat, 1, index.view(b, -1)).view(index.shape)
        return torch.mul(sums, c["inverse_area"].to(sums.dtype)).view(b, -1)  # block means
