"""What benchmarks/throughput.py compares the RAM's step against: the step's matrix products
alone (the bound its own arithmetic sets on a machine), and the same glimpses extracted one
sample at a time (the usual way public implementations do it)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from ramlab.models.retina import Pyramid, Retina

Step = Callable[[], None]


class PerSampleRetina(Retina):
    """The same glimpses, extracted one sample and one scale at a time (pad, crop, pool)."""

    def prepare(self, images: torch.Tensor) -> Pyramid:
        return Pyramid(flat=images[:, 0], height=images.shape[2], width=images.shape[3])

    def glimpse(self, pyramid: Pyramid, location: torch.Tensor) -> torch.Tensor:
        g, pad = self.glimpse_size, self.glimpse_size * 2 ** (self.scales - 1)
        out = []
        for image, loc in zip(pyramid.flat, location, strict=True):
            padded = F.pad(image, (pad, pad, pad, pad))
            cx = (loc[0].item() + 1) / 2 * pyramid.width
            cy = (loc[1].item() + 1) / 2 * pyramid.height
            parts = []
            for s in range(self.scales):
                size = g * 2**s
                x0 = max(-pad, min(pyramid.width, int(torch.floor(torch.tensor(cx - size / 2 + 0.5)))))
                y0 = max(-pad, min(pyramid.height, int(torch.floor(torch.tensor(cy - size / 2 + 0.5)))))
                crop = padded[y0 + pad : y0 + pad + size, x0 + pad : x0 + pad + size]
                parts.append(F.avg_pool2d(crop[None, None], 2**s).reshape(-1))
            out.append(torch.cat(parts))
        return torch.stack(out)


class MatmulRecorder(TorchDispatchMode):
    """Records the matrix products (linear, mm, addmm) an operation runs, with their
    operands' sizes and strides, so that they can be replayed alone."""

    OPS = (
        torch.ops.aten.linear.default,  # kept whole in inference mode
        torch.ops.aten.mm.default,
        torch.ops.aten.addmm.default,
        torch.ops.aten.addmm_.default,
    )

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.OPS:
            self.calls.append((func, [self._spec(a) for a in args]))
        elif func is torch.ops.aten.lstm_cell.default:
            # Kept whole in inference mode: its two products, input and hidden state.
            x, (h, _), w_ih, w_hh, *biases = args
            b_ih, b_hh = [*biases, None, None][:2]
            for operand, weight, bias in ((x, w_ih, b_ih), (h, w_hh, b_hh)):
                specs = [
                    self._spec(operand),
                    self._spec(weight),
                    self._spec(bias) if bias is not None else None,
                ]
                self.calls.append((torch.ops.aten.linear.default, specs))
        return func(*args, **(kwargs or {}))

    @staticmethod
    def _spec(a):
        return (a.size(), a.stride()) if isinstance(a, torch.Tensor) else a


def matmul_replay(step: Step, device: torch.device) -> tuple[Step, int]:
    """A function running only the matrix products of one `step`, on operands of the same
    sizes and strides: the time the step would take if everything else were free."""
    with MatmulRecorder() as recorder:
        step()

    def operand(spec):
        if isinstance(spec, tuple):  # (size, stride) of a tensor
            return torch.empty_strided(*spec, device=device).normal_()
        return spec

    calls = [(func, [operand(spec) for spec in specs]) for func, specs in recorder.calls]

    def replay() -> None:
        for func, args in calls:
            func(*args)

    return replay, len(calls)
