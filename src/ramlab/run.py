"""Reading a finished run directory back: its config, its best model, evaluations of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ramlab.checkpoint import load_checkpoint, load_weights
from ramlab.data.datasets import image_size, load_split
from ramlab.data.loader import SceneLoader
from ramlab.device import resolve_device
from ramlab.errors import RamlabError
from ramlab.evaluate import evaluate
from ramlab.models.base import Model
from ramlab.run_dir import read_result
from ramlab.runconfig import RunConfig, build_run_model


def load_run(run_dir: str | Path, *, device: str = "cpu") -> tuple[RunConfig, Model]:
    """The run's config and its best model (in eval mode)."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise RamlabError(f"{run_dir}: no such folder (a run's folder, as `ramlab train ... --out DIR` made)")
    if not (run_dir / "config.yaml").is_file():
        held = [name for name in ("best.pt", "last.pt", "result.json") if (run_dir / name).exists()]
        if not held:
            raise RamlabError(f"{run_dir}: not a run directory (no config.yaml); train one with ramlab train")
        how = "restore config.yaml from a copy (best.pt holds the run's config)"
        if "last.pt" in held:
            model = _model_of(run_dir / "last.pt") or "MODEL"
            how += (
                f", or rebuild it from last.pt with a resume (ramlab train {model} --out {run_dir} "
                "--resume, which also trains an unfinished run on to its end)"
            )
        raise RamlabError(f"{run_dir} holds a run ({', '.join(held)}) but no config.yaml: {how}")
    try:
        config = RunConfig.load(run_dir / "config.yaml")
    except RamlabError as exc:
        raise RamlabError(
            f"{exc}; fix: restore it from a copy, or delete it and resume the run (ramlab train ... --out "
            f"{run_dir} --resume), which rebuilds it from last.pt"
        ) from None
    weights = run_dir / "best.pt"
    if not weights.is_file():
        raise RamlabError(f"{run_dir}: no best.pt yet; finish or resume the run (ramlab train ... --resume)")
    model = build_run_model(config, resolve_device(device))
    load_weights(model, load_checkpoint(weights, map_location=resolve_device(device)), weights)
    return config, model.eval()


def _model_of(checkpoint: Path) -> str | None:
    """The model name a checkpoint's config holds, for a message; None where it cannot say."""
    try:
        config = load_checkpoint(checkpoint).get("config")
    except RamlabError:
        return None
    model = config.get("model") if isinstance(config, dict) else None
    return model if isinstance(model, str) else None


def refuse_unread_test(run_dir: str | Path, config: RunConfig, split: str) -> None:
    """Raises when `split` is the test split of a tuning run (trained with `test: false`), or
    of a run that has not finished (no result.json: training, interrupted, or trained on), or
    whose result.json holds no test error (a test cut short, or config.yaml edited).

    A model's test split is read once, when it is final: the trainer reads it with `--test
    true`, and a tuning run chosen on validation becomes final by resuming it so, which
    tests its best checkpoint then. Until then every evaluation of it reads validation."""
    if split != "test":
        return
    result = read_result(Path(run_dir, "result.json"))
    if config.train.test:
        if result is not None and result.get("test_error") is not None:
            return
        if result is not None:  # finished as a tuning run, then config.yaml said test: true
            raise RamlabError(
                f"{run_dir}: its result.json holds no test error (a test that did not finish, or a "
                "config.yaml edited to test: true), so its test split stays unread: resume it "
                f"(ramlab train ... --out {run_dir} --resume --test true), which tests best.pt once, "
                "or use --split val"
            )
        if Path(run_dir, "result.json").exists():
            fix = (
                f"resume the run (ramlab train ... --out {run_dir} --resume), which tests best.pt "
                "again and rewrites it"
                if Path(run_dir, "last.pt").exists()
                else "restore result.json from a copy (last.pt, which a resume rewrites it from, is gone)"
            )
            raise RamlabError(
                f"{run_dir}: result.json is damaged, so whether its best.pt is final cannot be read "
                f"and its test split stays unread: {fix}, or use --split val"
            )
        raise RamlabError(
            f"{run_dir} has not finished (no readable result.json), so its best.pt is not final "
            "and its test split stays unread: use --split val, or resume the run to its end "
            f"(ramlab train ... --out {run_dir} --resume), which tests it once"
        )
    command = (result or {}).get("command")
    if command:
        resume = "" if " --resume" in command else " --resume"
        how = f"{command}{resume} --test true"
    else:
        how = f"ramlab train ... --out {run_dir} --resume --test true"
    raise RamlabError(
        f"{run_dir} was trained with test: false (a tuning run), so its test split stays unread: "
        "use --split val, or, to make it a final model, resume it with --test true, which tests "
        f"its best checkpoint once: {how}"
    )


def evaluate_run(
    run_dir: str | Path,
    *,
    data: Any = None,
    split: str = "test",
    sample: bool = False,
    rollouts: int = 1,
    limit: int | None = None,
    device: str = "auto",
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Evaluate a run's best model on a dataset (a name or SceneSpec) of the same canvas, in
    batches of the run's `eval_batch_size` unless `batch_size` says otherwise (speed and
    memory only: the numbers do not depend on it, `ramlab.evaluate`)."""
    config, model = load_run(run_dir, device=device)
    refuse_unread_test(run_dir, config, split)
    data = data or config.data
    if image_size(data) != image_size(config.data):
        raise RamlabError(
            f"{run_dir} was trained on {image_size(config.data)} images; "
            f"{data} has {image_size(data)}: choose a dataset of the same canvas size"
        )
    scenes = load_split(data, split, seed=config.train.data_seed, limit=limit)
    batch_size = batch_size or config.train.eval_batch_size
    loader = SceneLoader(scenes, batch_size=batch_size, device=next(model.parameters()).device)
    result = evaluate(model, loader, sample=sample, rollouts=rollouts)
    return {
        "run": str(run_dir),
        "data": data if isinstance(data, str) else "custom",
        "split": split,
        "sample": sample or rollouts > 1,
        "rollouts": rollouts,
        **result.to_dict(),
    }
