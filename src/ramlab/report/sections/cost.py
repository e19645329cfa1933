"""Section: compute cost of every model at every image side (cost.json), the ResNet over the
RAM at each side, and accuracy per FLOP of the trained models."""

from __future__ import annotations

from ramlab.cost_rows import REPEATS_BEFORE, timing_mode, weights_in_brackets
from ramlab.report.doc import Doc
from ramlab.report.formatting import si
from ramlab.report.inputs import ReportInputs
from ramlab.report.runs import by_label

HEADERS = [
    "model",
    "image side (px)",
    "params",
    "FLOPs / image",
    "latency (ms)",
    "images/s (batch)",
    "peak memory (MiB; weights)",
    "FLOPs by part",
]


def cost_section(doc: Doc, inputs: ReportInputs) -> None:
    from ramlab.viz.cost_plots import plot_cost, plot_error_vs_flops

    doc.heading(2, "Compute cost", "cost")
    if not inputs.cost_rows:
        if (inputs.root / "cost.json").is_file():
            doc.para(
                "`cost.json` holds no usable measurement; what it could not use is listed under "
                "Skipped runs and files above."
            )
        else:
            doc.para("No `cost.json` in this folder (run `ramlab study` with a `cost` section).")
        return
    source = inputs.cost_source
    doc.para(
        "Inference of untrained models at each image side, each in its config (the preset's "
        f"`cost.configs`, else the model's default) adapted to the size ({_scales(inputs.cost_rows)}), "
        f"measured as {timing_mode(inputs.cost_rows)}: FLOPs per image counted by PyTorch's FLOP "
        "counter (a multiply-add is 2 FLOPs) with ramlab's formulas for the element-wise adds, "
        "multiplies and divides it scores 0 (the RAM's retina is block sums, a growing share of its "
        f"FLOPs as the side grows), latency at batch 1 and throughput at the batch shown ({_repeats(inputs.cost_rows)}), "
        "peak memory of live tensors at batch 1, the weights' MiB of it in brackets (a CPU "
        "convolution's own scratch space is not seen). "
        + (f"{source[0].upper()}{source[1:]}." if source else "Source: `cost.json`.")
    )
    rows = [
        [
            f"`{r['model']}`",
            str(r["size"]),
            si(r.get("params")),
            si(r.get("flops")),
            f"{r['latency_ms']:.3g}" if isinstance(r.get("latency_ms"), (int, float)) else "—",
            f"{r['throughput']:,.0f} ({r.get('throughput_batch', '?')})"
            if isinstance(r.get("throughput"), (int, float))
            else "—",
            f"{r['peak_memory_mb']:.3g}{weights_in_brackets(r)}"
            if isinstance(r.get("peak_memory_mb"), (int, float))
            else "—",
            ", ".join(f"{k} {si(v)}" for k, v in (r.get("flops_breakdown") or {}).items()),
        ]
        for r in sorted(inputs.cost_rows, key=lambda r: (r["model"], r["size"]))
    ]
    doc.table(HEADERS, rows)
    _trained_versus_measured(doc, inputs)
    _cost_ratios(doc, inputs)
    path = plot_cost(inputs.cost_rows, inputs.fig_path("cost"), styles=inputs.styles)
    doc.figure(path, "FLOPs, latency and peak memory against image side (log–log).")
    points = []
    for data in inputs.datasets:
        for label, runs in by_label(r for r in inputs.runs if r.data == data).items():
            flops = [r.test_flops for r in runs if r.test_flops]
            if flops:
                points.append((f"{label} · {data}", flops[0], [r.result["test_error"] for r in runs]))
    if points:
        # styles of this figure's own points: one model on two datasets is two points, each its own
        path = plot_error_vs_flops(points, inputs.fig_path("error-vs-flops"))
        doc.figure(path, "Accuracy per FLOP: test error against FLOPs per image of each trained model.")


def _count(value: object) -> bool:
    """Whether a row's value is a count (a whole number >= 1, not a bool): a damaged one is left out."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _scales(rows: list[dict]) -> str:
    """The scales each RAM row took at its side, in words."""
    by_side = {
        r["size"]: r["config"]["scales"]
        for r in sorted(rows, key=lambda r: r["size"])
        if r.get("model") == "ram" and isinstance(r.get("config"), dict) and _count(r["config"].get("scales"))
    }
    if not by_side:
        return "the RAM adds scales"
    sides = ", ".join(f"{n} at {side} px" for side, n in by_side.items())
    return f"the RAM adds scales for larger images: {sides}"


def _repeats(rows: list[dict]) -> str:
    """How many timed calls each median took (3 in rows written before they said)."""
    counts = sorted({c for r in rows if _count(c := r.get("repeats", REPEATS_BEFORE))})
    return f"the median of {' or '.join(map(str, counts)) or 'several'} timed calls after warm-up"


def trained_versus_measured(inputs: ReportInputs) -> list[tuple[str, str, int, float, float]]:
    """(label, data, side, the trained model's FLOPs per image, the cost row's) wherever a
    trained model differs (by over 1%) from the cost row of its model at its canvas side: the
    rows then measure another shape of that model than the one whose errors the report shows."""
    from ramlab.data.datasets import DATASETS, dataset_spec

    rows = {(r["model"], r["size"]): r for r in inputs.cost_rows if isinstance(r.get("flops"), (int, float))}
    found = {}
    for run in inputs.runs:
        trained = (run.evaluation or {}).get("flops")
        if not isinstance(trained, (int, float)) or run.data not in DATASETS:
            continue
        size = dataset_spec(run.data).canvas
        row = rows.get((run.model, size))
        if row and abs(trained - row["flops"]) > 0.01 * row["flops"]:
            found.setdefault(
                (run.label, run.data), (run.label, run.data, size, float(trained), float(row["flops"]))
            )
    return list(found.values())


def _trained_versus_measured(doc: Doc, inputs: ReportInputs) -> None:
    differing = trained_versus_measured(inputs)
    if not differing:
        return
    cases = "; ".join(
        f"`{label}` on {data} ({size} px) {si(trained)} FLOPs per image, its row {si(row)}"
        for label, data, size, trained, row in differing
    )
    doc.para(
        f"**These rows are not the trained models**: {cases}. The rows measure each model's "
        "default shape (or the preset's `cost.configs`); for the trained one, set `cost.configs` "
        "to its shape (`ramlab cost --config RECIPE` measures a recipe's). The ratios below "
        "compare the rows, not the trained models; the accuracy-per-FLOP figure uses the "
        "trained models' own FLOPs."
    )


def _cost_ratios(doc: Doc, inputs: ReportInputs) -> None:
    """The study's first question in one table: how many times the ResNet's cost the RAM's is."""
    from ramlab.cost_rows import cost_ratios

    ratios = cost_ratios(inputs.cost_rows, numerator="resnet", denominator="ram")
    if not ratios:
        return
    doc.para("ResNet cost over RAM cost at each image side (throughput: RAM images/s over ResNet's):")
    doc.table(
        ["image side (px)", "FLOPs", "params", "latency", "throughput", "peak memory"],
        [
            [
                f"{r['size']} ({r['timing']})" if r["timing"] else str(r["size"]),
                *(f"{r[k]:.3g}×" for k in ("flops", "params", "latency", "throughput", "peak_memory")),
            ]
            for r in ratios
        ],
    )
