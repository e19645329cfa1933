"""Compute cost of inference, measured: parameters, FLOPs, latency, throughput, peak memory.

    rows = measure_costs(["ram", "resnet"], [28, 60, 100, 200, 400, 800])
    print(format_cost_table(rows)); write_cost_json(rows, "cost.json")

Every row is one (model, image side) with the model's default config adapted by
`config_for_image_size` (the RAM keeps its glimpse size g and adds scales until its widest
patch g·2^(k-1) spans at least 80% of the side; the CNNs are unchanged), built on a fixed
seed, in eval mode, without gradients; the RAM looks where its policy's mean says.

FLOPs per image are counted by `torch.utils.flop_counter.FlopCounterMode` on one forward
pass at batch 1, never by hand. The counter's own formulas count matrix products and
convolutions (2 FLOPs per multiply-add). The RAM's retina has none: it is block sums
(adds and a multiply per table entry) and gathers, which the counter alone scores 0. So
we register more formulas, for every model alike: an elementwise add, sub, mul or div
costs 1 FLOP per output element, addcmul 2 (in the retina this is its pyramid of block
sums, which grows with the pixel count, and its index arithmetic); and the in-place addmm_
(the second product of the RAM's summed layers) counts as addmm. Gathers, copies, comparisons,
activations, normalisation and pooling are not counted (for the ResNet, BatchNorm in eval
mode would add about 2 FLOPs per activation: under 1% of its convolutions).

`flops_breakdown` splits the count by the model's top-level submodules, from the counter's
module-level counts; work done outside every submodule is "other". For the RAM the parts
are grouped as retina (the rollout's own arithmetic: the retina, plus 4 FLOPs per image for
a random first location), glimpse (the glimpse network), core, and heads (location policy,
classifier, baseline). Everything but the retina is independent of the image size, except
the glimpse network's first layer, whose input k·g² grows by one g² per added scale.

Timing: the median of `repeats` calls after one warm-up call (CUDA is synchronised), at
batch 1 (latency) and at a throughput batch of `batch` images, reduced for large images so
that one batch holds at most THROUGHPUT_PIXELS pixels (256 images of 100×100; 16 times that
on a GPU, whose memory and parallelism a small batch would not fill), which keeps memory and
time bounded; the batch used is reported as "throughput_batch".

Eager or compiled (`compiled=True`, `ramlab cost --compile`): compiled, the forward pass is
ramlab's fast path (`fastpath.CompiledForward`: torch.compile, with CUDA graphs on a GPU), one
graph per batch shape, and timing starts after COMPILED_WARMUP calls (compilation, then CUDA
graphs' warm-up and recording). Eager, a small model's GPU latency is mostly kernel launches,
which CUDA graphs remove; the row's "compiled" says which was measured. FLOPs and peak memory
are counted on the eager pass either way (the same arithmetic; the compiled pass's own peak,
with fused kernels and CUDA graphs' memory pools, is not measured).

Peak memory: the most bytes held at once by live tensors (weights, buffers, input and
activations) during one batch-1 forward pass. On CPU it is tracked by a dispatch mode that
watches every tensor storage the model creates (tracemalloc cannot see torch's allocator
and `resource`'s maximum RSS is per process, not per measurement); kernel scratch space is
not seen. On CUDA it is the weights, buffers and input plus what `torch.cuda.max_memory_allocated`
rose by during the pass (not its whole peak, which would also count whatever else is held:
the throughput batch, an earlier row's tensors).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from math import prod
from pathlib import Path
from typing import Any

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from ramlab.config import to_dict
from ramlab.cost_rows import REPEATS
from ramlab.device import resolve_device
from ramlab.errors import RamlabError
from ramlab.fastpath import CompiledForward
from ramlab.files import write_json
from ramlab.models.base import Model
from ramlab.models.registry import build_model, model_class
from ramlab.provenance import run_commit

DEFAULT_SIZES = (28, 60, 100, 200, 400, 800)
DEFAULT_MODELS = ("ram", "resnet", "convnet", "fc")
THROUGHPUT_PIXELS = 256 * 100 * 100
"""At most this many pixels in one throughput batch (256 images of 100×100) on a CPU."""
GPU_PIXELS_FACTOR = 16
"""On CUDA a throughput batch may hold this many times THROUGHPUT_PIXELS (2,048 images of
about 141×141)."""
COMPILED_WARMUP = 3
"""Untimed calls before a compiled graph is timed: the first compiles, and with CUDA graphs
the next ones warm up and record the graph."""

_aten = torch.ops.aten
ELEMENTWISE_OPS = (
    _aten.add,
    _aten.add_,
    _aten.sub,
    _aten.sub_,
    _aten.mul,
    _aten.mul_,
    _aten.div,
    _aten.div_,
)

# Top-level submodules grouped into the parts a reader asks about; "" is the model's own
# work outside every submodule. Models not listed are split by their submodules' names.
BREAKDOWN_GROUPS: dict[str, dict[str, str]] = {
    "ram": {
        "": "retina",
        "glimpse": "glimpse",
        "core": "core",
        "policy": "heads",
        "classifier": "heads",
        "baseline": "heads",
    },
}


def _elementwise_flops(*args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """1 FLOP per output element."""
    return prod(out_shape)


def _addcmul_flops(*args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """a + b * c: 2 FLOPs per output element."""
    return 2 * prod(out_shape)


def _addmm_flops(bias_shape: Any, mat1_shape: Any, mat2_shape: Any, *args: Any, **kwargs: Any) -> int:
    """bias + mat1 @ mat2 counted as the counter counts addmm: 2 FLOPs per multiply-add."""
    (m, k), n = mat1_shape, mat2_shape[1]
    return 2 * m * k * n


FLOP_FORMULAS = {
    **dict.fromkeys(ELEMENTWISE_OPS, _elementwise_flops),
    _aten.addcmul: _addcmul_flops,
    _aten.addcmul_: _addcmul_flops,
    _aten.addmm_: _addmm_flops,  # the counter knows addmm but not its in-place form
}


def count_flops(model: Model, images: torch.Tensor) -> tuple[int, dict[str, int], dict[str, int]]:
    """FLOPs of `model(images)`: (total, per top-level part, per operator), for the whole batch."""
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as counter:
        model(images)
    counts = counter.get_flop_counts()
    root = type(model).__name__
    total = sum(counts.get(root, {}).values())
    groups = BREAKDOWN_GROUPS.get(getattr(model, "registry_name", ""), {})
    parts = dict.fromkeys(groups.values(), 0)  # the groups' order, e.g. retina first
    inside = 0
    for child, _ in model.named_children():
        flops = sum(counts.get(f"{root}.{child}", {}).values())
        inside += flops
        key = groups.get(child, child)
        parts[key] = parts.get(key, 0) + flops
    if total > inside or "" in groups:
        own = groups.get("", "other")
        parts[own] = parts.get(own, 0) + total - inside
    by_op: dict[str, int] = {}
    for op, flops in counts.get(root, {}).items():
        name = str(op).removeprefix("aten.")
        by_op[name] = by_op.get(name, 0) + flops
    return total, parts, by_op


class LiveTensorMemory(TorchDispatchMode):
    """Tracks the peak bytes of live tensor storages while active.

    Storages alive at entry (weights, input) are given to `start`; every op's outputs are
    added; a storage counts until it is freed (checked after each op), so the peak is exact
    at op granularity. Views share their base's storage and are counted once.
    """

    def __init__(self, *, start: list[torch.Tensor]) -> None:
        super().__init__()
        self._live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.peak = 0
        self._add(start)

    def _add(self, tensors: list[Any]) -> None:
        self._live = {k: v for k, v in self._live.items() if not v[0].expired()}
        for tensor in tensors:
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                ref = StorageWeakRef(storage)
                self._live.setdefault(ref.cdata, (ref, storage.nbytes()))
        self.peak = max(self.peak, sum(nbytes for _, nbytes in self._live.values()))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self._add(tree_flatten(out)[0])
        return out


def weights_bytes(model: Model) -> int:
    """The bytes of a model's parameters and buffers, each storage once: the part of its peak
    memory that is not the input or activations (a RAM's grows with the image only through
    the scales its config adds)."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}.values())


def peak_memory_bytes(model: Model, images: torch.Tensor) -> int:
    """The most bytes held at once by live tensors during `model(images)` (see the module doc)."""
    start = [images, *model.parameters(), *model.buffers()]
    if images.device.type == "cuda":
        device = images.device
        torch.cuda.synchronize(device)
        held = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        with torch.no_grad():
            model(images)
        torch.cuda.synchronize(device)
        rise = torch.cuda.max_memory_allocated(device) - held
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in start}
        return sum(storages.values()) + rise  # each storage once, as on the CPU
    with torch.no_grad(), LiveTensorMemory(start=start) as tracker:
        model(images)
    return tracker.peak


def median_seconds(call: Callable[[], Any], *, repeats: int, device: torch.device, warmup: int = 1) -> float:
    """The median wall time of `call()` over `repeats` runs, after `warmup` untimed runs."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times = []
    with torch.no_grad():
        for _ in range(warmup):
            call()
        for _ in range(repeats):
            sync()
            tick = time.perf_counter()
            call()
            sync()
            times.append(time.perf_counter() - tick)
    return statistics.median(times)


def throughput_batch(batch: int, size: int, device: torch.device | None = None) -> int:
    """The throughput batch for `size`×`size` images: `batch`, capped at THROUGHPUT_PIXELS
    (GPU_PIXELS_FACTOR times that on CUDA)."""
    pixels = THROUGHPUT_PIXELS * (GPU_PIXELS_FACTOR if device is not None and device.type == "cuda" else 1)
    return max(1, min(batch, pixels // (size * size)))


def sized_config(name: str, size: int, config: Any = None, *, trained_size: int | None = None) -> Any:
    """Model `name`'s config (`config`, default the model's defaults; trained on images of
    `trained_size`, if known) adapted to `size`."""
    cls = model_class(name)
    base = config if config is not None else cls.config_class()
    return cls.config_for_image_size(base, size, trained_size=trained_size)


def check_sizes(
    models: list[str], sizes: list[int], configs: dict[str, Any], trained_sizes: dict[str, int] | None = None
) -> None:
    """Every model builds at every size (as `measure_costs` will adapt it), checked before
    anything is measured: a size that fails after others were timed lost those rows."""
    for name in models:
        for size in sizes:
            config = sized_config(name, size, configs.get(name), trained_size=(trained_sizes or {}).get(name))
            try:
                model_class(name).check_image_size(config, (size, size))
            except RamlabError as exc:
                raise RamlabError(f"{name} at {size} px: {exc}") from None


def row_settings(
    name: str,
    size: int,
    *,
    device: str,
    batch: int,
    config: Any = None,
    compiled: bool = False,
    repeats: int = REPEATS,
) -> dict[str, Any]:
    """How `measure_cost` with these arguments measures, as its row records it (JSON types):
    a saved row with other settings was measured another way."""
    resolved = resolve_device(device)
    settings = {
        "device": str(resolved),
        "throughput_batch": throughput_batch(batch, size, resolved),
        "compiled": compiled,
        "repeats": repeats,
        "config": to_dict(sized_config(name, size, config)),
    }
    return json.loads(json.dumps(settings))


def measure_cost(
    name: str,
    size: int,
    *,
    device: str | torch.device = "cpu",
    batch: int = 256,
    repeats: int = REPEATS,
    config: Any = None,
    compiled: bool = False,
    trained_size: int | None = None,
) -> dict[str, Any]:
    """One row of `measure_costs`: model `name` on `size`×`size` images."""
    device = resolve_device(device) if isinstance(device, str) else device
    config = sized_config(name, size, config, trained_size=trained_size)
    torch.manual_seed(0)
    model = build_model(name, config, image_size=(size, size)).to(device).eval()
    generator = torch.Generator(device=device).manual_seed(0)

    def images(count: int) -> torch.Tensor:
        return torch.rand(count, 1, size, size, generator=generator, device=device)  # (B, 1, H, W)

    one = images(1)
    flops, parts, by_op = count_flops(model, one)
    many = images(throughput_batch(batch, size, device))
    forward = CompiledForward(model) if compiled else model
    warmup = COMPILED_WARMUP if compiled else 1
    latency = median_seconds(lambda: forward(one), repeats=repeats, device=device, warmup=warmup)
    per_batch = median_seconds(lambda: forward(many), repeats=repeats, device=device, warmup=warmup)
    if compiled:
        # Frees this row's graphs (and CUDA graph pools), and keeps the rows from adding up to
        # dynamo's limit of recompilations of one function, past which it would run eagerly.
        torch.compiler.reset()
    return {
        "model": name,
        "size": size,
        "params": model.num_parameters(),
        "flops": flops,
        "flops_breakdown": parts,
        "flops_by_op": by_op,
        "latency_ms": latency * 1e3,
        "throughput": len(many) / per_batch,
        "throughput_batch": len(many),
        "peak_memory_mb": peak_memory_bytes(model, one) / 2**20,
        "weights_mb": weights_bytes(model) / 2**20,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "compiled": compiled,
        "repeats": repeats,
        "config": to_dict(config),
        "commit": run_commit(),  # rows of other code are never divided by these (cost_ratios)
        "torch": torch.__version__,
    }


def measure_costs(
    models: list[str],
    sizes: list[int],
    *,
    device: str = "cpu",
    batch: int = 256,
    repeats: int = REPEATS,
    configs: dict[str, Any] | None = None,
    compiled: bool = False,
    trained_sizes: dict[str, int] | None = None,
) -> list[dict[str, Any]]:
    """One row per (model, size), models outer: the keys model, size, params, flops (per
    image), flops_breakdown, flops_by_op, latency_ms (batch 1), throughput (images/s),
    throughput_batch, peak_memory_mb (MiB, 2^20 bytes, at batch 1), weights_mb (the MiB of
    its parameters and buffers, part of that peak), device, threads (torch's CPU threads while
    timing), compiled (timed through the compiled fast path, else eagerly), repeats (the
    timed calls each median is taken over), config (the
    config used), commit and torch (the code and torch version that measured it).

    `configs` maps a model name to its base config (a dataclass; default: the model's
    defaults), which `config_for_image_size` then adapts to each size; `trained_sizes` the
    image side a config was trained on (a recipe's or a run's), where it stays as it is. An
    unknown model name, or a model that does not fit a size, raises a RamlabError before
    anything is measured.
    """
    for name in models:
        model_class(name)
    configs, trained_sizes = configs or {}, trained_sizes or {}
    check_sizes(models, list(sizes), configs, trained_sizes)
    resolved = resolve_device(device)
    return [
        measure_cost(
            name,
            size,
            device=resolved,
            batch=batch,
            repeats=repeats,
            config=configs.get(name),
            compiled=compiled,
            trained_size=trained_sizes.get(name),
        )
        for name in models
        for size in sizes
    ]


def write_cost_json(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write the rows as JSON ({"rows": [...]}) atomically; returns the path."""
    return write_json(path, {"rows": rows})


def read_cost_json(path: str | Path) -> list[dict[str, Any]]:
    return json.loads(Path(path).read_text())["rows"]
