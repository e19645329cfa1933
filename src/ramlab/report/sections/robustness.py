"""Section: each run's error under scene shifts it was not trained on (robustness.json)."""

from __future__ import annotations

from ramlab.protocols import ONE_PASS
from ramlab.report.doc import Doc
from ramlab.report.formatting import fmt_some
from ramlab.report.inputs import ReportInputs
from ramlab.report.paper import data_key
from ramlab.report.runs import by_label, links
from ramlab.sweeps import (
    FIRST_ROWS,
    MOVED_BY_SCALE,
    REDRAWN,
    SMALL_MOVED,
    errors_by_level,
    format_of,
    sweep_kind,
    training_level,
)

SPLIT_WORDS = {"test": "test", "val": "validation"}


def _kind_words(kind: tuple, *, glimpses: bool = True, one_pass: bool = False) -> str:
    """A sweep kind (`sweep_kind`) in words, for a table's heading: how its models with
    glimpses were read (`glimpses`) and whether models without (`one_pass`) are in it too."""
    split, sampled, rollouts, limit, first_n, older = kind
    policy = (
        f"sampled policy, class probabilities averaged over {rollouts} rollouts"
        if rollouts > 1
        else ("sampled policy, one rollout" if sampled else "policy mean, one rollout")
    )
    if not glimpses:
        policy = ONE_PASS
    elif one_pass:
        policy = f"models with glimpses: {policy}; the others: {ONE_PASS}"
    digits = (
        "all its digits"
        if limit is None
        else (f"its first {limit} digits (an older sweep)" if first_n else f"{limit} of its digits")
    )
    told = {
        REDRAWN: "; each level's scenes drawn anew (before format 5)",
        SMALL_MOVED: "; each level's scenes drawn anew, and a scale level below 1 let the smaller "
        "digit move in the window it opened (before format 4)",
        FIRST_ROWS: "; the random numbers of the split's first digits, not their own (format 5)",
        MOVED_BY_SCALE: "; a scale level placed each resized digit anew in its window, not on "
        "its own centre (before format 7)",
    }.get(older, "")
    return f"{SPLIT_WORDS.get(split, split)} split, {digits}, {policy}{told}"


def _kind_order(kind: tuple) -> tuple:
    """The study's own sweeps (test digits, policy mean) first."""
    split, sampled, rollouts, limit, first_n, older = kind
    return (split != "test", sampled, rollouts, older, first_n, limit is not None, limit or 0)


def robustness_section(doc: Doc, inputs: ReportInputs) -> None:
    doc.heading(2, "Robustness to shifts not seen in training", "robustness")
    swept = [r for r in inputs.runs if r.robustness]
    if not swept:
        doc.para("No run has a `robustness.json` (run `ramlab robustness RUN_DIR --json ...`).")
        return
    first_n = sorted({r.name for r in swept if r.robustness.get("limit") and format_of(r.robustness) < 2})
    doc.para(
        "Each run's best model on its own digits, with one scene parameter changed: all of them, "
        "or, where the count is lower, a fixed random subset, the same for every run, whose "
        "scenes are made anew at the training level too (so its error there is not the run's "
        "test error). Every run of a dataset and data seed sees the same scenes at a level. "
        "Levels share what their shift leaves alone: a noise, clutter or rotation level holds "
        "the scenes the sweep reads at the dataset's own level with only the noise, the number "
        "of clutter pieces or the digit's turn changed (with all digits read, that level is the "
        "run's split itself); a translate level moves the digits within its window, and a "
        "scale level resizes each digit about the centre the dataset gave it (moved only where "
        "a larger digit would leave the canvas); both keep the clutter and noise, except at a "
        "level of a single place (translate 0). A translate level of ±N px places each digit "
        "anywhere in a window of ±N px about the centre, so a wider window still holds the "
        "placements of the narrower ones (the widest is the whole canvas); a clutter piece is a "
        "square crop of another digit of the split (the dataset's clutter size), put anywhere "
        "and merged by the brighter pixel; noise of σ is added to the [0, 1] pixels and clipped, "
        "so on a black background only its positive half shows. A table marks the training "
        "level where its models share one. Error in %, mean ± std over the seeds swept at that level ((n=k) where "
        "fewer than the group's seeds on the dataset: the others not swept, swept for another "
        "kind of table, or without the level). Sweeps of another split, policy, number or "
        "choice of digits are never averaged together: each kind has its own tables."
        + (
            f" Older sweeps read the first N digits of MNIST's test file instead, whose first half is "
            f"the harder one: {', '.join(f'`{name}`' for name in first_n)}."
            if first_n
            else ""
        )
    )
    for data in sorted({r.data for r in swept}, key=data_key):
        here = [r for r in swept if r.data == data]
        doc.heading(3, f"{data}")
        groups = by_label([r for r in inputs.runs if r.data == data])  # every seed, swept or not
        seeds = {label: len(members) for label, members in groups.items()}
        missing = [r.name for label in by_label(here) for r in groups[label] if not r.robustness]
        if missing:
            doc.para(
                "Not swept (no readable `robustness.json`; their groups' rows count the seeds that were): "
                + ", ".join(f"`{name}`" for name in missing)
                + "."
            )
        kinds = sorted({sweep_kind(r.robustness) for r in here}, key=_kind_order)
        for number, kind in enumerate(kinds):
            runs = [r for r in here if sweep_kind(r.robustness) == kind]
            _kind_tables(doc, inputs, data, kind, runs, number, seeds)


def _kind_tables(
    doc: Doc, inputs: ReportInputs, data: str, kind: tuple, runs: list, number: int, seeds: dict[str, int]
) -> None:
    """The figure and one table per shift of the sweeps of one kind on one dataset; `seeds`:
    each group's runs on the dataset, against which a cell counts its seeds."""
    from ramlab.viz.curves import plot_robustness

    split = SPLIT_WORDS.get(kind[0], kind[0])
    sweeps: dict[str, dict[str, list]] = {}  # shift -> label -> [(run, entry)]
    for label, members in by_label(runs).items():
        for run in members:
            for name, entry in run.robustness["shifts"].items():
                sweeps.setdefault(name, {}).setdefault(label, []).append((run, entry))
    entries = {
        name: {label: [e for _, e in pairs] for label, pairs in per.items()} for name, per in sweeps.items()
    }
    glimpses = [run.takes_glimpses for run in runs]
    words = _kind_words(kind, glimpses=any(glimpses), one_pass=not all(glimpses))
    randomly = sorted({r.label for r in runs if str(r.robustness.get("protocol", "")).startswith("random")})
    if randomly:  # the random-glimpse control has no policy to take the mean of
        words += f"; {', '.join(randomly)}: random glimpse locations"
    doc.para(f"*{words}*")
    stem = f"robustness-{data}" if number == 0 else f"robustness-{data}-{number}"
    path = plot_robustness(entries, inputs.fig_path(stem), styles=inputs.styles, split=split)
    doc.figure(
        path,
        f"{split.capitalize()} error under each shift, runs trained on {data} (grey: each model's training level).",
    )
    for name, per_label in sweeps.items():
        every = [e for pairs in per_label.values() for _, e in pairs]
        levels = sorted({level for e in every for level in e["levels"]})
        counts = sorted({e.get("count") for e in every if e.get("count") is not None})
        rows = []
        for label, pairs in per_label.items():
            by_level = errors_by_level([e for _, e in pairs])
            cells = [fmt_some(by_level.get(level, []), seeds.get(label, len(pairs)), 1) for level in levels]
            rows.append([f"`{label}`", *cells, links([run for run, _ in pairs])])
        count = "/".join(str(c) for c in counts) or "?"
        trained = {training_level(e) for e in every} - {None}
        shared = next(iter(trained)) if len(trained) == 1 else None  # a level, or a range
        header = [f"{v:g} (trained)" if v == shared else f"{v:g}" for v in levels]
        said = ""
        if len(trained) > 1 or isinstance(shared, tuple):
            ways = sorted(f"{t[0]:g} to {t[1]:g}" if isinstance(t, tuple) else f"{t:g}" for t in trained)
            said = f" Trained at {', '.join(ways)} (by model)."
        doc.para(f"**{name}**: {every[0].get('label', name)}; {count} {split} scenes per level.{said}")
        doc.table(["model", *header, "runs"], rows)
