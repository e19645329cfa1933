"""The report of a study: `report.md` and a self-contained `report.html` from files only.

    write_report(DIR)  reads every run directory under DIR (config.yaml, result.json,
                       metrics.jsonl, eval.json, robustness.json, glimpses.png/.gif), and
                       DIR/cost.json, DIR/study.yaml, DIR/jobs.jsonl when present

Sections: test error per dataset and model (mean ± std over seeds) beside the paper's
numbers, anytime and training curves; compute cost; robustness; reward structures; glimpse
trajectories; provenance (config, seed, commit and command of every run). A table row
names the runs its numbers come from, linked to their provenance. It never trains or runs a
model, so it can be rewritten at any time, also while a study is running.

Runs are grouped by dataset and model; within a group, runs whose configs differ only in
the seed share a label, and a label shows the config fields that differ from the other
runs of that model on that dataset (e.g. `ram (reward=sparse+bbox)`).
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ramlab.config import flatten
from ramlab.errors import RamlabError
from ramlab.files import atomic_write

FIGURES = "report_files"

# Mnih et al. 2014 (final version), test error %, keyed by dataset then model row.
PAPER: dict[str, dict[str, float]] = {
    "mnist": {"fc": 1.69, "convnet": 1.21, "ram/4": 1.54, "ram/6": 1.12, "ram/7": 1.07},
    "translated60": {"fc": 2.63, "convnet": 1.62, "ram/4": 1.54, "ram/6": 1.22, "ram/8": 1.2},
    "cluttered60": {"fc": 11.96, "convnet": 8.09, "ram/4": 4.96, "ram/6": 4.08, "ram/8": 4.04},
    "cluttered100": {"convnet": 14.35, "ram/4": 9.41, "ram/6": 8.31, "ram/8": 8.11},
}
DATA_ORDER = ("mnist", "translated60", "centred60", "cluttered60", "cluttered100")
# Config fields that never make two runs different experiments.
NOT_EXPERIMENT = {
    "train.seed",
    "train.device",
    "train.threads",
    "train.progress",
    "train.tensorboard",
    "train.log_every",
    "train.checkpoint_every",
    "train.eval_batch_size",
}


# ---- reading runs -------------------------------------------------------------------------
def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise RamlabError(f"{path}: cannot read ({exc}); delete it and rerun its job") from None


def _metrics(path: Path) -> list[dict]:
    from ramlab.metrics import read_metrics

    return read_metrics(path) if path.is_file() else []


@dataclass
class Run:
    """One run directory, read back."""

    path: Path
    name: str  # path relative to the report's folder
    config: dict
    result: dict | None
    metrics: list[dict]
    evaluation: dict | None
    robustness: dict | None
    label: str = ""

    @property
    def model(self) -> str:
        return self.config["model"]

    @property
    def data(self) -> str:
        return self.config["data"]

    @property
    def seed(self) -> int:
        return self.config.get("train", {}).get("seed", 0)

    @property
    def finished(self) -> bool:
        return self.result is not None

    @property
    def anchor(self) -> str:
        return "run-" + re.sub(r"[^A-Za-z0-9_-]+", "-", self.name).strip("-")

    def link(self) -> str:
        return f"[{self.path.name}](#{self.anchor})"


def find_runs(root: Path) -> list[Run]:
    """Every run directory under `root` (a folder with config.yaml and a trainer's files)."""
    runs = []
    for config_path in sorted(root.rglob("config.yaml")):
        folder = config_path.parent
        if not ((folder / "metrics.jsonl").exists() or (folder / "result.json").exists()):
            continue
        config = yaml.safe_load(config_path.read_text()) or {}
        if not isinstance(config, dict) or "model" not in config or "data" not in config:
            continue
        runs.append(
            Run(
                path=folder,
                name=str(folder.relative_to(root)),
                config=config,
                result=_json(folder / "result.json"),
                metrics=_metrics(folder / "metrics.jsonl"),
                evaluation=_json(folder / "eval.json"),
                robustness=_json(folder / "robustness.json"),
            )
        )
    # Finished runs are labelled among themselves: a run still training with another config
    # does not change the labels in the tables.
    _label([r for r in runs if r.finished])
    _label([r for r in runs if not r.finished])
    return runs


def _label(runs: list[Run]) -> None:
    """Label each run by its model and the config fields that set it apart on its dataset."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.data, run.model), []).append(run)
    for (_, model), members in groups.items():
        flats = [{k: v for k, v in flatten(r.config).items() if k not in NOT_EXPERIMENT} for r in members]
        keys = sorted({k for f in flats for k in f if len({repr(g.get(k)) for g in flats}) > 1})
        for run, flat in zip(members, flats, strict=True):
            parts = [f"{k.split('.')[-1]}={_value(flat.get(k))}" for k in keys]
            run.label = f"{model} ({', '.join(parts)})" if parts else model


def _value(value: Any) -> str:
    if isinstance(value, tuple):
        return "-".join(map(str, value))
    return str(value)


def _data_key(name: str) -> tuple[int, str]:
    return (DATA_ORDER.index(name) if name in DATA_ORDER else len(DATA_ORDER), name)


def paper_error(run: Run) -> float | None:
    """The paper's test error for this model (and number of glimpses) on this dataset."""
    table = PAPER.get(run.data, {})
    glimpses = run.config.get("model_config", {}).get("glimpses")
    key = f"{run.model}/{glimpses}" if glimpses is not None else run.model
    return table.get(key)


# ---- formatting ---------------------------------------------------------------------------
def mean_std(values: list[float]) -> tuple[float, float | None]:
    if not values:
        return math.nan, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def fmt_mean_std(values: list[float], digits: int = 2) -> str:
    mean, std = mean_std(values)
    if math.isnan(mean):
        return "—"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{mean:.{digits}f}"


def si(value: float | None) -> str:
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "—"
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {suffix}"
    return f"{value:.3g}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


# ---- the document -------------------------------------------------------------------------
@dataclass
class Doc:
    """Blocks rendered both as Markdown and as HTML (inline: `code`, [text](#link), **bold**)."""

    root: Path
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, level: int, text: str, anchor: str | None = None) -> None:
        self.blocks.append(("heading", (level, text, anchor)))

    def para(self, text: str) -> None:
        self.blocks.append(("para", text))

    def table(self, headers: list[str], rows: list[list[str]]) -> None:
        if rows:
            self.blocks.append(("table", (headers, rows)))

    def figure(self, path: Path, caption: str) -> None:
        self.blocks.append(("figure", (path, caption)))

    def details(self, summary: str, code: str) -> None:
        self.blocks.append(("details", (summary, code)))

    # Markdown ----------------------------------------------------------------------------
    def markdown(self) -> str:
        out = []
        for kind, value in self.blocks:
            if kind == "heading":
                level, text, anchor = value
                out.append(("" if not anchor else f'<a id="{anchor}"></a>\n') + "#" * level + " " + text)
            elif kind == "para":
                out.append(value)
            elif kind == "table":
                headers, rows = value
                lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
                lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in rows]
                out.append("\n".join(lines))
            elif kind == "figure":
                path, caption = value
                alt = _LINK.sub(r"\1", caption)  # no brackets inside an image's alt text
                out.append(f"![{alt}]({path.relative_to(self.root).as_posix()})\n\n*{caption}*")
            elif kind == "details":
                summary, code = value
                out.append(
                    f"<details><summary>{summary}</summary>\n\n```yaml\n{code.rstrip()}\n```\n\n</details>"
                )
        return "\n\n".join(out) + "\n"

    # HTML --------------------------------------------------------------------------------
    def html(self, title: str) -> str:
        body = []
        for kind, value in self.blocks:
            if kind == "heading":
                level, text, anchor = value
                ident = f' id="{anchor}"' if anchor else ""
                body.append(f"<h{level}{ident}>{_inline(text)}</h{level}>")
            elif kind == "para":
                body.append(f"<p>{_inline(value)}</p>")
            elif kind == "table":
                headers, rows = value
                head = "".join(f"<th>{_inline(h)}</th>" for h in headers)
                lines = "".join(
                    "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in rows
                )
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{lines}</tbody></table>")
            elif kind == "figure":
                path, caption = value
                mime = "image/gif" if path.suffix == ".gif" else "image/png"
                data = base64.b64encode(path.read_bytes()).decode()
                alt = html.escape(_LINK.sub(r"\1", caption))
                body.append(
                    f'<figure><img src="data:{mime};base64,{data}" alt="{alt}">'
                    f"<figcaption>{_inline(caption)}</figcaption></figure>"
                )
            elif kind == "details":
                summary, code = value
                body.append(
                    f"<details><summary>{html.escape(summary)}</summary><pre>{html.escape(code)}</pre></details>"
                )
        return HTML_PAGE.format(title=html.escape(title), body="\n".join(body))


_CODE = re.compile(r"`([^`]+)`")
_ANCHOR = re.compile(r"\{#([A-Za-z0-9_-]+)\}")  # {#name}: a link target inside a table cell


def _md_cell(cell: str) -> str:
    return _ANCHOR.sub(r'<a id="\1"></a>', cell.replace("|", "\\|"))


_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def _inline(text: str) -> str:
    out = _ANCHOR.sub(r'<a id="\1"></a>', html.escape(text, quote=False))
    out = _CODE.sub(r"<code>\1</code>", out)
    out = _LINK.sub(lambda m: f'<a href="{html.escape(m[2])}">{m[1]}</a>', out)
    return _BOLD.sub(r"<strong>\1</strong>", out)


HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 70rem; margin: 2rem auto; padding: 0 1rem;
       color: #111; line-height: 1.45; }}
table {{ border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }}
th, td {{ border: 1px solid #bbb; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }}
th {{ background: #eee; }}
img {{ max-width: 100%; }}
figure {{ margin: 1rem 0; }} figcaption {{ font-style: italic; font-size: 0.9rem; }}
code, pre {{ background: #f4f4f4; }} pre {{ padding: 0.5rem; overflow-x: auto; font-size: 0.8rem; }}
@media print {{ details {{ display: none; }} }}
</style></head><body>
{body}
</body></html>
"""


# ---- sections -----------------------------------------------------------------------------
class ReportBuilder:
    def __init__(self, root: Path) -> None:
        from ramlab.viz.curves import series_styles

        self.root = root
        self.figures = root / FIGURES
        self.all_runs = find_runs(root)
        self.runs = [r for r in self.all_runs if r.finished]
        self.cost_rows = self._cost_rows()
        self.jobs = self._jobs()
        self.study = self._study()
        self.doc = Doc(root)
        self.styles = series_styles(
            [r.label for r in sorted(self.runs, key=lambda r: (r.model, r.label))]
            + list(dict.fromkeys(row["model"] for row in self.cost_rows))
        )
        self.datasets = sorted({r.data for r in self.runs}, key=_data_key)

    def _cost_rows(self) -> list[dict]:
        from ramlab.study import read_cost_rows

        return read_cost_rows(self.root / "cost.json")

    def _jobs(self) -> list[dict]:
        path = self.root / "jobs.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip().startswith("{")]

    def _study(self) -> dict:
        path = self.root / "study.yaml"
        if not path.is_file():
            return {}
        return yaml.safe_load(path.read_text()) or {}

    def by_label(self, runs: Iterable[Run]) -> dict[str, list[Run]]:
        groups: dict[str, list[Run]] = {}
        for run in sorted(runs, key=lambda r: (r.model, r.label, r.seed)):
            groups.setdefault(run.label, []).append(run)
        return groups

    def fig_path(self, name: str) -> Path:
        return self.figures / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"

    @staticmethod
    def links(runs: list[Run]) -> str:
        return ", ".join(r.link() for r in runs)

    # -- sections ---------------------------------------------------------------------------
    def build(self) -> Doc:
        doc = self.doc
        doc.heading(1, "ramlab study report")
        description = self.study.get("description")
        if description:
            doc.para(" ".join(str(description).split()))
        doc.para(
            f"Generated {time.strftime('%Y-%m-%d %H:%M')} from the files in `{self.root}`: "
            f"{len(self.runs)} finished run(s) on {', '.join(self.datasets) or 'no dataset'}"
            + (f", {len(self.cost_rows)} cost measurement(s)" if self.cost_rows else "")
            + ". Errors are test errors in % (lower is better), mean ± sample std over seeds; "
            "each row names its runs, linked to their config, seed, commit and command under Provenance."
        )
        unfinished = [r for r in self.all_runs if not r.finished]
        if unfinished:
            doc.para(
                "Not finished yet (left out of the tables): "
                + ", ".join(f"`{r.name}`" for r in unfinished)
                + "."
            )
        self.errors_section()
        self.cost_section()
        self.robustness_section()
        self.rewards_section()
        self.glimpses_section()
        self.provenance_section()
        return doc

    def errors_section(self) -> None:
        from ramlab.viz.curves import plot_anytime, plot_training

        doc = self.doc
        doc.heading(2, "Test error per dataset and model", "errors")
        doc.para(
            "Beside each row, the test error Mnih et al. (2014, final version) report for the same "
            "model on the same dataset (their RAM: the sparse reward; their FC net: 2 layers of 256). "
            "`sampled` is the error with glimpse locations drawn from the policy instead of its mean; "
            "`measured as` says how the test error itself was measured (one rollout with the policy "
            "mean unless the run's config asked for Monte Carlo averaging of sampled rollouts)."
        )
        for data in self.datasets:
            groups = self.by_label(r for r in self.runs if r.data == data)
            rows = []
            for label, runs in groups.items():
                errors = [r.result["test_error"] for r in runs]
                protocols = sorted(
                    {r.result.get("test_protocol") or "policy mean, one rollout" for r in runs}
                )
                sampled = [
                    r.evaluation["sampled"]["error"] for r in runs if (r.evaluation or {}).get("sampled")
                ]
                flops = [r.evaluation["flops"] for r in runs if (r.evaluation or {}).get("flops")]
                paper = paper_error(runs[0])
                rows.append(
                    [
                        f"`{label}`",
                        fmt_mean_std(errors),
                        fmt_mean_std(sampled) if sampled else "—",
                        str(len(runs)),
                        f"{paper:.2f}" if paper is not None else "—",
                        str(runs[0].result.get("test_count", "—")),
                        si(runs[0].result.get("params")),
                        si(flops[0]) if flops else "—",
                        f"{statistics.fmean(r.result.get('epochs', 0) for r in runs):g}",
                        duration(statistics.fmean(r.result.get("train_seconds", 0.0) for r in runs)),
                        "; ".join(protocols),
                        self.links(runs),
                    ]
                )
            doc.heading(3, f"{data}")
            doc.table(
                [
                    "model",
                    "test error %",
                    "sampled %",
                    "seeds",
                    "paper %",
                    "test scenes",
                    "params",
                    "FLOPs / image",
                    "epochs",
                    "train time",
                    "measured as",
                    "runs",
                ],
                rows,
            )
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
                    self.fig_path(f"anytime-{data}"),
                    title=f"Anytime error on {data}",
                    styles=self.styles,
                )
                doc.figure(
                    path,
                    f"Error after each glimpse on {data} (mean ± std over seeds; dashed: one-shot models).",
                )
            curves = [(r.label, r.metrics) for runs in groups.values() for r in runs if r.metrics]
            if curves:
                path = plot_training(
                    curves, self.fig_path(f"training-{data}"), title=f"Training on {data}", styles=self.styles
                )
                doc.figure(path, f"Training curves on {data}, one line per run.")

    def cost_section(self) -> None:
        from ramlab.viz.curves import plot_cost, plot_error_vs_flops

        doc = self.doc
        doc.heading(2, "Compute cost", "cost")
        if not self.cost_rows:
            doc.para("No `cost.json` in this folder (run `ramlab study` with a `cost` section).")
            return
        cost_job = next((j for j in reversed(self.jobs) if j.get("kind") == "cost"), None)
        device = ", ".join(sorted({str(r.get("device", "?")) for r in self.cost_rows}))
        doc.para(
            "Inference of untrained models at each image side, their default config adapted to the size "
            f"(the RAM adds scales), measured on {device}: FLOPs per image counted by PyTorch's FLOP "
            "counter, latency at batch 1 (median), throughput at the batch shown, peak memory of live "
            "tensors at batch 1. "
            + (
                f"Measured by `{cost_job['command']}` at commit `{cost_job.get('commit')}`."
                if cost_job
                else "Source: `cost.json`."
            )
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
                f"{r['peak_memory_mb']:.3g}" if isinstance(r.get("peak_memory_mb"), (int, float)) else "—",
                ", ".join(f"{k} {si(v)}" for k, v in (r.get("flops_breakdown") or {}).items()),
            ]
            for r in sorted(self.cost_rows, key=lambda r: (r["model"], r["size"]))
        ]
        doc.table(
            [
                "model",
                "image side (px)",
                "params",
                "FLOPs / image",
                "latency (ms)",
                "images/s (batch)",
                "peak memory (MB)",
                "FLOPs by part",
            ],
            rows,
        )
        self.cost_ratios()
        path = plot_cost(self.cost_rows, self.fig_path("cost"), styles=self.styles)
        doc.figure(path, "FLOPs, latency and peak memory against image side (log–log).")
        points = []
        for data in self.datasets:
            for label, runs in self.by_label(r for r in self.runs if r.data == data).items():
                flops = [r.evaluation["flops"] for r in runs if (r.evaluation or {}).get("flops")]
                if flops:
                    points.append((f"{label} · {data}", flops[0], [r.result["test_error"] for r in runs]))
        if points:
            styles = {p[0]: self.styles.get(p[0].split(" · ")[0], {}) for p in points}
            styles = {k: v for k, v in styles.items() if v}
            path = plot_error_vs_flops(points, self.fig_path("error-vs-flops"), styles=styles)
            doc.figure(path, "Accuracy per FLOP: test error against FLOPs per image of each trained model.")

    def cost_ratios(self) -> None:
        """The study's first question in one table: how many times the ResNet's cost the RAM's is."""
        from ramlab.cost import cost_ratios

        ratios = cost_ratios(self.cost_rows, numerator="resnet", denominator="ram")
        if not ratios:
            return
        self.doc.para(
            "ResNet cost over RAM cost at each image side (throughput: RAM images/s over ResNet's):"
        )
        self.doc.table(
            ["image side (px)", "FLOPs", "params", "latency", "throughput", "peak memory"],
            [
                [
                    str(r["size"]),
                    *(f"{r[k]:.3g}×" for k in ("flops", "params", "latency", "throughput", "peak_memory")),
                ]
                for r in ratios
            ],
        )

    def robustness_section(self) -> None:
        from ramlab.viz.curves import plot_robustness

        doc = self.doc
        doc.heading(2, "Robustness to shifts not seen in training", "robustness")
        swept = [r for r in self.runs if r.robustness]
        if not swept:
            doc.para("No run has a `robustness.json` (run `ramlab robustness RUN_DIR --json ...`).")
            return
        doc.para(
            "Each run's best model on its own test digits, with one scene parameter changed "
            "(the same digits at every level). Error in %, mean over seeds."
        )
        for data in sorted({r.data for r in swept}, key=_data_key):
            groups = self.by_label(r for r in swept if r.data == data)
            sweeps: dict[str, dict[str, list[dict]]] = {}
            for label, runs in groups.items():
                for run in runs:
                    for name, entry in run.robustness["shifts"].items():
                        sweeps.setdefault(name, {}).setdefault(label, []).append(entry)
            doc.heading(3, f"{data}")
            path = plot_robustness(sweeps, self.fig_path(f"robustness-{data}"), styles=self.styles)
            doc.figure(
                path, f"Test error under each shift, runs trained on {data} (grey: the training level)."
            )
            for name, per_label in sweeps.items():
                levels = next(iter(per_label.values()))[0]["levels"]
                rows = []
                for label, entries in per_label.items():
                    same = [e for e in entries if e["levels"] == levels]
                    cells = [fmt_mean_std([e["error"][i] for e in same], 1) for i in range(len(levels))]
                    rows.append([f"`{label}`", *cells, self.links(groups[label])])
                unit = next(iter(per_label.values()))[0].get("label", name)
                doc.para(
                    f"**{name}**: {unit}; count {next(iter(per_label.values()))[0].get('count', '?')} test scenes per level."
                )
                doc.table(["model", *(f"{v:g}" for v in levels), "runs"], rows)

    def rewards_section(self) -> None:
        from ramlab.viz.curves import plot_rewards

        doc = self.doc
        doc.heading(2, "Reward structures", "rewards")
        rewarded = [r for r in self.runs if "reward" in r.config.get("model_config", {})]
        compared = [d for d in self.datasets if len({r.label for r in rewarded if r.data == d}) > 1]
        if not compared:
            doc.para("Fewer than two reward structures were trained on any dataset.")
            return
        doc.para(
            "Runs of the attention model under each reward structure: accuracy (every seed), learning "
            "speed (validation error per epoch; best epoch) and where the glimpses go (share of glimpse "
            "centres inside the digit's bounding box, and mean distance to it, on the test scenes)."
        )
        for data in compared:
            groups = self.by_label(r for r in rewarded if r.data == data)
            rows, errors, val_curves, inside = [], {}, {}, {}
            for label, runs in groups.items():
                errors[label] = [r.result["test_error"] for r in runs]
                val_curves[label] = [
                    [(m["epoch"], m["val/error"]) for m in r.metrics if "val/error" in m] for r in runs
                ]
                where = [r.evaluation["where"] for r in runs if (r.evaluation or {}).get("where")]
                if where:
                    inside[label] = [w["inside_bbox_percent"] for w in where]
                first_val = [c[0][1] for c in val_curves[label] if c]
                rows.append(
                    [
                        f"`{runs[0].config['model_config']['reward']}`",
                        f"`{label}`",
                        fmt_mean_std(errors[label]),
                        str(len(runs)),
                        fmt_mean_std(first_val, 1) if first_val else "—",
                        fmt_mean_std([r.result.get("best_epoch", math.nan) for r in runs], 1),
                        fmt_mean_std([statistics.fmean(w["inside_bbox_percent"]) for w in where], 1)
                        if where
                        else "—",
                        fmt_mean_std([statistics.fmean(w["distance_to_bbox_px"]) for w in where], 1)
                        if where
                        else "—",
                        self.links(runs),
                    ]
                )
            doc.heading(3, f"{data}")
            doc.table(
                [
                    "reward",
                    "model",
                    "test error %",
                    "seeds",
                    "val error after epoch 1 %",
                    "best epoch",
                    "glimpses in bbox %",
                    "distance to bbox (px)",
                    "runs",
                ],
                rows,
            )
            path = plot_rewards(
                errors,
                self.fig_path(f"rewards-{data}"),
                val_curves={k: [c for c in v if c] for k, v in val_curves.items()},
                inside=inside,
                title=f"Reward structures on {data}",
                styles=self.styles,
            )
            doc.figure(
                path, f"Reward structures on {data}: error per seed, learning speed, where the glimpses go."
            )

    def glimpses_section(self) -> None:
        doc = self.doc
        doc.heading(2, "Glimpse trajectories", "glimpses")
        shown = 0
        for data in self.datasets:
            for label, runs in self.by_label(r for r in self.runs if r.data == data).items():
                run = runs[0]
                png, gif = run.path / "glimpses.png", run.path / "glimpses.gif"
                if not png.is_file():
                    continue
                doc.heading(3, f"{label} on {data}")
                doc.figure(
                    png, f"Glimpses of {run.link()} on the first test scenes of {data} (seed {run.seed})."
                )
                if gif.is_file():
                    doc.figure(gif, f"The same, glimpse by glimpse ({run.link()}).")
                shown += 1
        if not shown:
            doc.para(
                "No run has glimpse figures (they are drawn by the study's evaluation of attention models)."
            )

    def provenance_section(self) -> None:
        doc = self.doc
        doc.heading(2, "Provenance", "provenance")
        doc.para(
            "Every number above comes from these run directories: `result.json` (test error, params, "
            "time), `metrics.jsonl` (curves), `eval.json` (sampled error, glimpse statistics, FLOPs), "
            "`robustness.json` and the study's `cost.json`. Each run's full config is its `config.yaml`."
        )
        rows = []
        for run in sorted(self.all_runs, key=lambda r: r.name):
            result = run.result or {}
            rows.append(
                [
                    f"{{#{run.anchor}}}`{run.name}`",
                    f"`{run.model}`",
                    run.data,
                    str(run.seed),
                    f"`{str(result.get('commit') or '—')[:12]}`",
                    f"`{result.get('command', '—')}`" if result else "unfinished",
                    f"[config.yaml]({(run.path / 'config.yaml').relative_to(self.root).as_posix()})",
                ]
            )
        doc.table(["run", "model", "data", "seed", "commit", "command", "config"], rows)
        for run in sorted(self.all_runs, key=lambda r: r.name):
            doc.details(f"config of {run.name}", yaml.safe_dump(run.config, sort_keys=False))
        cost_jobs = [j for j in self.jobs if j.get("kind") == "cost"]
        if self.cost_rows:
            line = (
                f"`cost.json`: measured by `{cost_jobs[-1]['command']}` at commit `{cost_jobs[-1].get('commit')}`; "
                if cost_jobs
                else "`cost.json`: "
            )
            doc.para(line + "each row holds the model config it measured.")
        if self.study:
            doc.details("the study preset (study.yaml)", yaml.safe_dump(self.study, sort_keys=False))


def write_report(root: str | Path) -> Path:
    """Write DIR/report.md and DIR/report.html (figures in DIR/report_files); return report.md."""
    root = Path(root)
    if not root.is_dir():
        raise RamlabError(f"{root}: no such folder")
    builder = ReportBuilder(root)
    if not builder.all_runs and not builder.cost_rows:
        raise RamlabError(
            f"{root}: no run directories (config.yaml with result.json) and no cost.json under it"
        )
    doc = builder.build()
    md = root / "report.md"
    atomic_write(md, lambda f: f.write(doc.markdown()), mode="w")
    page = doc.html("ramlab study report")
    atomic_write(root / "report.html", lambda f: f.write(page), mode="w")
    return md


__all__ = ["PAPER", "Run", "find_runs", "paper_error", "write_report"]
