"""The extra evaluation of a trained run (a study's `eval` job): RUN/eval.json with its test
error under sampled glimpse locations, where the glimpses go, its parameters and FLOPs, and
the glimpse trajectories drawn on test scenes (RUN/glimpses.png, RUN/glimpses.gif), for
models that take glimpses.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from ramlab.data import datasets
from ramlab.files import write_json
from ramlab.study.schema import EvalSpec


def eval_settings(spec: EvalSpec) -> dict:
    """What eval.json was made with: a changed preset makes the evaluation run again, and so
    does an older eval.json (draws 1: a limited evaluation and the figures' few scenes took
    the random numbers of the split's first rows, not their own; 2: their own)."""
    return {"glimpses": spec.glimpses, "sampled": spec.sampled, "limit": spec.limit, "draws": 2}


def _flops(model, scenes) -> dict[str, Any]:
    """FLOPs per image of the trained model on one of its test scenes (ramlab.cost's counter)."""
    import torch

    from ramlab.cost import count_flops
    from ramlab.data.loader import unit_pixels

    image = unit_pixels(torch.from_numpy(scenes.images[:1])[:, None])  # (1, 1, H, W)
    total, parts, _ = count_flops(model, image.to(next(model.parameters()).device))
    return {"flops": total, "flops_breakdown": parts}


def evaluate_run_extras(
    run_dir: str | Path,
    *,
    spec: EvalSpec,
    device: str = "auto",
    command: str | None = None,
    commit: str | None = None,
) -> dict[str, Any]:
    """eval.json of a run: the test error with sampled locations, where the glimpses go, and
    the glimpse trajectories (glimpses.png, glimpses.gif), for models that take glimpses."""
    import torch

    from ramlab.data.loader import SceneLoader
    from ramlab.evaluate import evaluate
    from ramlab.provenance import run_commit
    from ramlab.run import load_run, refuse_unread_test
    from ramlab.viz.glimpses import animate_trajectories, draw_trajectories, trajectories, where_glimpses_go

    run_dir = Path(run_dir)
    config, model = load_run(run_dir, device=device)
    refuse_unread_test(run_dir, config, "test")
    # The trainer's test scenes unless told otherwise, so sampled and mean-policy errors compare.
    limit = spec.limit or config.train.eval_limit
    scenes = datasets.load_split(config.data, "test", seed=config.train.data_seed, limit=limit)
    loader = SceneLoader(
        scenes, batch_size=config.train.eval_batch_size, device=next(model.parameters()).device
    )
    with torch.no_grad():
        attention = model(next(iter(loader)).images[:2]).rollout is not None
    result: dict[str, Any] = {
        "run": str(run_dir),
        "settings": eval_settings(spec),
        "attention": attention,
        "params": model.num_parameters(),
        **_flops(model, scenes),
        "commit": commit or run_commit(),
        "command": command or shlex.join(["ramlab", *sys.argv[1:]]),
    }
    if attention:
        if spec.sampled and not model.looks_at_random:  # random places: the test error again
            result["sampled"] = evaluate(model, loader, sample=True).to_dict()
        result["where"] = {**where_glimpses_go(model, loader), "split": "test"}
        if spec.glimpses:
            shown = datasets.load_split(config.data, "test", seed=config.train.data_seed, limit=spec.glimpses)
            traj = trajectories(model, shown)
            title = f"{run_dir.name}: {config.model} on {config.data}"
            draw_trajectories(traj, run_dir / "glimpses.png", title=title)
            animate_trajectories(
                traj, run_dir / "glimpses.gif", count=min(spec.glimpses, 9), title=run_dir.name
            )
            result["figures"] = {"png": "glimpses.png", "gif": "glimpses.gif"}
    write_json(run_dir / "eval.json", result)
    return result
