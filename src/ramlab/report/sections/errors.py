"""Section: test error per dataset and model, beside the paper's, with anytime and training curves."""

from __future__ import annotations

import statistics

from ramlab.protocols import ONE_PASS
from ramlab.report.doc import Doc
from ramlab.report.formatting import duration, fmt_mean_std, fmt_some, si
from ramlab.report.inputs import ReportInputs
from ramlab.report.paper import paper_error
from ramlab.report.runs import Run, by_label, links
from ramlab.report.stats import binomial_se

HEADERS = [
    "model",
    "test error %",
    "sampled %",
    "seeds",
    "paper %",
    "test scenes",
    "test SE",
    "params",
    "FLOPs / image",
    "epochs run",
    "train time",
    "measured as",
    "runs",
]


def epochs_cell(runs: list[Run]) -> str:
    """The mean epochs the runs trained (an early stop ends one before its budget), and the
    budget when any stopped short of it."""
    run = [r.result.get("epochs_run", r.result.get("epochs", 0)) for r in runs]
    budget = max(r.result.get("epochs", 0) for r in runs)
    cell = f"{statistics.fmean(run):.4g}"
    return cell + (f" (max {budget:g})" if min(run) < budget else "")


def train_time_cell(runs: list[Run]) -> str:
    """Mean training time of the runs that recorded one, (n=k) when some did not."""
    seconds = [r.result["train_seconds"] for r in runs if "train_seconds" in r.result]
    if not seconds:
        return "—"
    return duration(statistics.fmean(seconds)) + (f" (n={len(seconds)})" if len(seconds) < len(runs) else "")


def measured_as(run: Run) -> str:
    """How a run's test error was measured; a model without glimpses in one pass, whatever an
    older result file says."""
    if not run.takes_glimpses:
        return ONE_PASS
    return run.result.get("test_protocol") or "policy mean, one rollout"


def sampling_error_cell(errors: list[float], scenes: int | None) -> str:
    """± the binomial standard error of the mean error on `scenes` test scenes, or —."""
    if not scenes:
        return "—"
    return f"±{binomial_se(statistics.fmean(errors), scenes):.2f}"


def errors_section(doc: Doc, inputs: ReportInputs) -> None:
    from ramlab.viz.curves import plot_anytime, plot_training

    doc.heading(2, "Test error per dataset and model", "errors")
    doc.para(
        "Beside each row, the test error Mnih et al. (2014, final version) report for the same "
        "model on the same dataset (their RAM: the sparse reward; their FC net: 2 layers of 256). "
        "`sampled` is the error with glimpse locations drawn from the policy instead of its mean; "
        "`measured as` says how the test error itself was measured (one rollout with the policy "
        "mean unless the run's config asked for Monte Carlo averaging of sampled rollouts). "
        "`test SE` is the test set's own sampling error at that error rate, √(p(1 − p) / N) in "
        "points for N test scenes: how far the figure could move on another test set of that "
        "size, whatever the seeds. The paper's test scenes were others, so a gap to its figure "
        "smaller than about 2.8 times it (two such errors, at 95%) could be the test sets' luck. "
        "Rows here share their scenes, so their gaps are not judged by it (the seeds' spread and "
        "the permutation tests below are)."
    )
    for data in inputs.datasets:
        groups = by_label(r for r in inputs.runs if r.data == data)
        rows = []
        for label, runs in groups.items():
            errors = [r.result["test_error"] for r in runs]
            protocols = sorted({measured_as(r) for r in runs})
            sampled = [r.evaluation["sampled"]["error"] for r in runs if (r.evaluation or {}).get("sampled")]
            flops = [r.test_flops for r in runs if r.test_flops]
            paper = paper_error(runs[0])
            rows.append(
                [
                    f"`{label}`",
                    fmt_mean_std(errors),
                    fmt_some(sampled, len(runs)),
                    str(len(runs)),
                    f"{paper:.2f}" if paper is not None else "—",
                    str(runs[0].result.get("test_count", "—")),
                    sampling_error_cell(errors, runs[0].result.get("test_count")),
                    si(runs[0].result.get("params")),
                    si(flops[0]) if flops else "—",
                    epochs_cell(runs),
                    train_time_cell(runs),
                    "; ".join(protocols),
                    links(runs),
                ]
            )
        doc.heading(3, f"{data}")
        doc.table(HEADERS, rows)
        anytime = {
            label: [
                r.result["per_glimpse_test_error"] for r in runs if r.result.get("per_glimpse_test_error")
            ]
            for label, runs in groups.items()
        }
        anytime = {k: v for k, v in anytime.items() if v}
        if any(len(v[0]) > 1 for v in anytime.values()):
            path = plot_anytime(
                anytime,
                inputs.fig_path(f"anytime-{data}"),
                title=f"Anytime error on {data}",
                styles=inputs.styles,
            )
            caption = f"Error after each glimpse on {data} (mean ± std over seeds; flat lines: one-shot models, marked so in the legend)."
            last_only = [f"`{label}`" for label in anytime if last_glimpse_only(groups[label])]
            if last_only:
                caption += (
                    f" {', '.join(last_only)} trained the classifier on the last glimpse's answer only "
                    "(ce_all_steps false): their answers after the earlier glimpses were never trained, "
                    "so those points show the last glimpse's classifier reading an earlier state."
                )
            doc.figure(path, caption)
        curves = [(r.label, r.metrics) for runs in groups.values() for r in runs if r.metrics]
        if curves:
            path = plot_training(
                curves, inputs.fig_path(f"training-{data}"), title=f"Training on {data}", styles=inputs.styles
            )
            doc.figure(path, f"Training curves on {data}, one line per run.")


def last_glimpse_only(runs: list[Run]) -> bool:
    """Whether these RAM runs' configs say their cross-entropy read only the last glimpse's
    answer (`ce_all_steps: false`); a config that does not say is not counted."""
    return all(
        r.model == "ram" and r.config.get("model_config", {}).get("ce_all_steps") is False for r in runs
    )
