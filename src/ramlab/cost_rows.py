"""The rows of a cost table (`cost.json`), read back and compared without torch.

`ramlab.cost` measures the rows and writes them; the study runner (what is measured
already), the report (the compute-cost section) and `ramlab cost`'s table read them here
(the ResNet over the RAM per side: `cost_ratios`; the printed table: `format_cost_table`),
so neither has to import the measuring code, and the report never imports the study runner.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ramlab.errors import RamlabError


def read_cost_rows(path: str | Path) -> list[dict]:
    """The rows of a cost JSON (a list, or a mapping with `rows`); [] when absent."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RamlabError(f"{path}: not valid JSON ({exc}); delete it to measure again") from None
    rows = data.get("rows", []) if isinstance(data, dict) else data
    if not isinstance(rows, list) or not all(
        isinstance(r, dict) and "model" in r and "size" in r for r in rows
    ):
        raise RamlabError(f"{path}: not a cost table (rows with model and size); delete it to measure again")
    return rows


def timing_mode(rows: list[dict[str, Any]]) -> str:
    """How the rows were timed, in words: "eager", "compiled (...)" or both, with the devices."""
    devices = ", ".join(sorted({str(r.get("device", "?")) for r in rows}))
    modes = sorted({bool(r.get("compiled")) for r in rows})
    words = {False: "eager", True: "compiled (torch.compile; CUDA graphs on a GPU)"}
    return f"{' and '.join(words[m] for m in modes)} inference on {devices}"


def _si(value: float) -> str:
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


REPEATS = 10
"""Timed calls per measurement (latency, throughput), the median taken, as the README's cost
figures were timed (`--repeats 10`); a study's cost job takes seconds either way. Here, not in
`ramlab.cost`, so that the study's schema and the report read it without the measuring code."""


REPEATS_BEFORE = 3
"""The timed calls of a row written before rows said (a study's cost job always took 3)."""

TIMING = ("device", "compiled", "threads", "commit", "torch")
"""What makes two rows' times comparable: only rows alike in all of them are divided."""


def _timing(row: dict[str, Any]) -> tuple:
    return tuple(bool(row.get(k)) if k == "compiled" else row.get(k) for k in TIMING)


def cost_ratios(rows: list[dict[str, Any]], *, numerator: str, denominator: str) -> list[dict[str, Any]]:
    """Per size and timing (device, eager or compiled, threads, commit, torch) where both models were
    measured alike (a time on one device, or of other code, is never divided by another):
    numerator / denominator of flops, params, latency, peak memory, and denominator /
    numerator of throughput (how many times faster). Each ratio's `timing` names those of
    its settings that differ among the ratios ("" where they are all alike)."""
    by_key = {(row["model"], row["size"], _timing(row)): row for row in rows}
    ratios = []
    for size, timing in sorted(
        {(row["size"], _timing(row)) for row in rows}, key=lambda k: (k[0], repr(k[1]))
    ):
        top, bottom = by_key.get((numerator, size, timing)), by_key.get((denominator, size, timing))
        if top is None or bottom is None:
            continue
        ratios.append(
            {
                "size": size,
                "device": timing[0],
                "settings": dict(zip(TIMING, timing, strict=True)),
                "flops": top["flops"] / bottom["flops"],
                "params": top["params"] / bottom["params"],
                "latency": top["latency_ms"] / bottom["latency_ms"],
                "throughput": bottom["throughput"] / top["throughput"],
                "peak_memory": top["peak_memory_mb"] / bottom["peak_memory_mb"],
            }
        )
    varied = [k for k in TIMING if len({repr(r["settings"][k]) for r in ratios}) > 1]
    for r in ratios:
        r["timing"] = ", ".join(_setting_words(k, r["settings"][k]) for k in varied)
    return ratios


def _setting_words(key: str, value: Any) -> str:
    if key == "compiled":
        return "compiled" if value else "eager"
    if key == "threads":
        return f"{value} threads" if value is not None else "threads ?"
    if key == "commit":  # short, with a -dirty tree's suffix
        text = str(value or "?")
        return f"commit {text[:7]}{'-dirty' if text.endswith('-dirty') else ''}"
    if key == "torch":
        return f"torch {value or '?'}"
    return str(value)


def weights_in_brackets(row: dict[str, Any]) -> str:
    """ " (W)": the MiB of a row's weights and buffers, part of its peak (rows before: "")."""
    weights = row.get("weights_mb")
    return f" ({weights:.3g})" if isinstance(weights, (int, float)) and not isinstance(weights, bool) else ""


def format_cost_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of the rows, then the ResNet / RAM ratios per size (when both ran)."""
    header = (
        "model",
        "size",
        "params",
        "FLOPs",
        "FLOPs breakdown",
        "latency ms",
        "img/s (batch)",
        "peak MiB (weights)",
    )
    lines = [header]
    for row in rows:
        breakdown = " ".join(f"{k}={_si(v)}" for k, v in row["flops_breakdown"].items())
        lines.append(
            (
                row["model"],
                str(row["size"]),
                _si(row["params"]),
                _si(row["flops"]),
                breakdown,
                f"{row['latency_ms']:.3g}",
                f"{row['throughput']:.4g} ({row['throughput_batch']})",
                f"{row['peak_memory_mb']:.3g}{weights_in_brackets(row)}",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    left = {0, 4}
    text = [f"{timing_mode(rows)}:"] + [
        "  ".join(
            cell.ljust(w) if i in left else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    ]
    ratios = cost_ratios(rows, numerator="resnet", denominator="ram")
    if ratios:
        text += ["", "ResNet / RAM per image side (throughput: how many times more images/s the RAM does):"]
        for r in ratios:
            where = f" ({r['timing']})" if r["timing"] else ""
            text.append(
                f"  {r['size']:>4}{where}: FLOPs x{r['flops']:.3g}, params x{r['params']:.3g}, "
                f"latency x{r['latency']:.3g}, throughput x{r['throughput']:.3g}, "
                f"peak memory x{r['peak_memory']:.3g}"
            )
    return "\n".join(text)


__all__ = [
    "REPEATS",
    "TIMING",
    "cost_ratios",
    "format_cost_table",
    "read_cost_rows",
    "timing_mode",
    "weights_in_brackets",
]
