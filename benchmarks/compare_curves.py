"""Compare runs' validation curves over windows of epochs: the plain mean of each window, the
best epoch, and (from a run directory's own metrics.jsonl) the sampled training error.

    python benchmarks/compare_curves.py [LABEL=]RUN ... [--windows 61-80 101-120]
        [--around-best 5] [--key val/error] [--key val/in_box] [--train-error]
        [--train-key grad/core]
        [--budgets 50 100] [--reach 5.4 3.4] [--early-stop 20/200 60/300]

RUN is a run directory or a committed curve `results/recipes/[tuning/]NAME-val.jsonl`.
A window A-B is epochs A to B, both included, as validation numbers them; an epoch a run has
no line for is skipped (a mean over fewer epochs is marked with how many it had). `--key`
picks the validation metric (default `val/error`; `val/in_box` is the share of glimpses in the
digit's box, `val/glimpse_distance` their spacing in pixels); several may be given.
`--train-error` adds each window's mean of the logged training steps' error (policy sampled,
raw weights), and `--train-key KEY` (repeatable) that of any other metric of those lines: a
loss (`loss/reinforce`), the reward (`policy/reward`) or a module's gradient norm before
clipping (`grad/core`, `grad/glimpse`, `grad/policy`): only run directories have those lines,
committed curves do not.
`--around-best K` adds the window of K epochs either side of the run's best validation error
(the mean of the 2K + 1 epochs around it: how far the best stands out of its neighbourhood).
`--budgets B ...` adds, per run, the lowest validation error at or before epoch B (what a run
stopped at B would keep; "(to E)" when the run ended at epoch E < B). `--reach T ...` adds
the first epoch whose validation error is at or below T % ("never" if none).
`--early-stop P[/E] ...` adds, per run, what the trainer's early stop with a patience of P
epochs (and at most E epochs) would have kept and when it would have stopped ("to E" when
the curve ends before it would: unknown). All three read val/error whatever `--key` says.
This is the command behind every "mean over epochs A-B" in results/recipes/TUNING.md.
"""

from __future__ import annotations

import argparse

from ramlab.errors import RamlabError
from ramlab.metrics import read_metrics
from ramlab.progress import (
    RunFiles,
    best,
    early_stop_at,
    labelled_run,
    time_to,
    train_by_epoch,
    val_by_epoch,
    val_curve,
    window_mean,
)
from ramlab.provenance import command_line


def parse_window(text: str) -> tuple[int, int]:
    first, sep, last = text.partition("-")
    try:
        window = (int(first), int(last if sep else first))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a window is FIRST-LAST epochs, e.g. 61-80; got {text!r}") from None
    if window[0] > window[1]:
        raise argparse.ArgumentTypeError(f"window {text!r} ends before it starts")
    return window


def cell(by_epoch: dict[int, float], first: int, last: int) -> str:
    mean = window_mean(by_epoch, first, last)
    if mean is None:
        return "-"
    count = sum(first <= epoch <= last for epoch in by_epoch)
    return f"{mean:.2f}" if count == last - first + 1 else f"{mean:.2f} ({count} ep.)"


def best_by(curve: list, budget: int) -> str:
    """The lowest validation error at or before epoch `budget`."""
    lowest = best([point for point in curve if point.epoch <= budget])
    if lowest is None:
        return "-"
    last = int(curve[-1].epoch)
    return f"{lowest.error:.2f}" + (f" (to {last})" if last < budget else "")


def parse_stop(text: str) -> tuple[int, int]:
    patience, sep, epochs = text.partition("/")
    try:
        rule = (int(patience), int(epochs) if sep else 10**9)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"an early stop is PATIENCE or PATIENCE/EPOCHS, e.g. 20/200; got {text!r}"
        ) from None
    if rule[0] < 0 or rule[1] < 1:
        raise argparse.ArgumentTypeError(f"early stop {text!r}: patience >= 0 and epochs >= 1")
    return rule


def stopped(curve: list, patience: int, epochs: int) -> str:
    """The checkpoint a run of this curve keeps under early stop `patience` within `epochs`,
    and the epoch it stops at ("to E" when the curve ends first: not known)."""
    by_epoch = {int(point.epoch): point.error for point in curve}
    rule = early_stop_at(by_epoch, patience, epochs)
    if rule is None:
        return "-"
    end = f"stop {rule.stop}" if rule.stop is not None else f"to {int(curve[-1].epoch)}"
    return f"{rule.best_error:.2f} @ {rule.best_epoch}, {end}"


def first_reaching(curve: list, target: float) -> str:
    point = time_to(curve, target)
    return "never" if point is None else str(int(point.epoch))


def _check_keys(parser: argparse.ArgumentParser, runs: list[list[dict]], keys: list[str]) -> None:
    """Each `--key` a number on some run's validation lines, and a list on none, else a usage
    error listing those that are (a misspelt key printed rows of '-', a list-valued one a
    traceback). A run that never logged a key (a CNN's `val/in_box`) shows '-' for it."""
    lines = [r for records in runs for r in records if "val/error" in r]
    numeric = sorted(
        {k for r in lines for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    )
    listed = {k for r in lines for k, v in r.items() if isinstance(v, list)}
    for key in keys:
        if key not in numeric or key in listed:
            parser.error(
                f"--key {key} is not a number on the runs' validation lines; they have: {', '.join(numeric)}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", metavar="[LABEL=]RUN")
    parser.add_argument("--windows", type=parse_window, nargs="+", default=[], metavar="A-B")
    parser.add_argument("--around-best", type=int, metavar="K", help="also epochs best-K to best+K")
    parser.add_argument(
        "--key", action="append", dest="keys", metavar="KEY", help="validation metric (repeatable)"
    )
    parser.add_argument("--train-error", action="store_true", help="also the sampled training error")
    parser.add_argument(
        "--train-key",
        action="append",
        default=[],
        dest="train_keys",
        metavar="KEY",
        help="also a metric of the logged training steps, e.g. grad/core (repeatable)",
    )
    parser.add_argument(
        "--budgets", type=int, nargs="+", default=[], metavar="B", help="best val/error by epoch B"
    )
    parser.add_argument(
        "--reach", type=float, nargs="+", default=[], metavar="T", help="first epoch at val/error <= T %%"
    )
    parser.add_argument(
        "--early-stop",
        type=parse_stop,
        nargs="+",
        default=[],
        dest="stops",
        metavar="P[/E]",
        help="best val/error kept and stop epoch under patience P within E epochs",
    )
    args = parser.parse_args()
    keys = args.keys or ["val/error"]
    if not (args.windows or args.budgets or args.reach or args.stops) and args.around_best is None:
        parser.error(
            "give --windows A-B ..., --around-best K, --budgets B ..., --reach T ... and/or --early-stop P/E ..."
        )

    print(command_line())  # what a pasted table came from
    header = [f"{a}-{b}" for a, b in args.windows]
    if args.around_best is not None:
        header.append(f"best±{args.around_best}")
    header += [f"best by {b}" for b in args.budgets] + [f"first <= {t:g}" for t in args.reach]
    header += [f"early stop {p}" + (f"/{e}" if e < 10**9 else "") for p, e in args.stops]
    loaded: list[tuple[str, list[dict]]] = []
    for label, path in map(labelled_run, args.runs):
        try:
            loaded.append((label, read_metrics(RunFiles.find(path).curve)))
        except RamlabError as exc:
            parser.error(str(exc))
        if not val_curve(loaded[-1][1]):
            parser.error(
                f"{path}: no validation lines (val/error); is it a run directory or a -val.jsonl curve?"
            )
    _check_keys(parser, [records for _, records in loaded], keys)
    rows = []
    for label, records in loaded:
        curve = val_curve(records)
        top = best(curve)
        best_epoch = int(top.epoch)
        series = {key: val_by_epoch(records, key) for key in keys}
        if args.train_error:
            series["train/error (sampled)"] = train_by_epoch(records)
        for key in args.train_keys:
            series[f"{key} (training)"] = train_by_epoch(records, key)
        windows = list(args.windows)
        if args.around_best is not None:
            windows.append((best_epoch - args.around_best, best_epoch + args.around_best))
        for name, by_epoch in series.items():
            rows.append(
                [
                    label,
                    name,
                    *(cell(by_epoch, a, b) for a, b in windows),
                    *(best_by(curve, b) for b in args.budgets),
                    *(first_reaching(curve, t) for t in args.reach),
                    *(stopped(curve, p, e) for p, e in args.stops),
                    f"{top.error:.2f} @ {best_epoch}",
                    str(int(curve[-1].epoch)),
                ]
            )
    table = [["run", "metric", *header, "best val/error", "last epoch"], *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
