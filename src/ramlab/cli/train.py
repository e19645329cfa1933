"""`ramlab train MODEL ...` and `ramlab eval RUN_DIR ...`."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from ramlab.config import add_dataclass_args, add_policy_args, add_threads_arg, field_names, load_yaml
from ramlab.data.datasets import DATASETS
from ramlab.errors import RamlabError
from ramlab.files import check_json_target, write_json
from ramlab.models.registry import model_class, model_config_class, model_names
from ramlab.runconfig import READ_BY, RunConfig, TrainConfig, config_path, recipe_names, unused_fields


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train a model; writes a run directory")
    models = train.add_subparsers(dest="model", metavar=f"MODEL ({', '.join(model_names())})", required=True)
    for name in model_names():
        cls = model_class(name)
        p = models.add_parser(name, help=(cls.__doc__ or name).strip().splitlines()[0])
        p.add_argument(
            "--config",
            metavar="FILE.yaml|RECIPE|RUN_DIR",
            help="a run config (model, data, train, model_config): a YAML file, the name of a "
            "committed recipe (mnist, translated60, cluttered60, cluttered100) or a run's folder (its "
            "config.yaml); options below override it",
        )
        p.add_argument(
            "--data",
            choices=sorted(DATASETS),
            help="dataset (default: translated60, or the config's)",
        )
        p.add_argument(
            "--out",
            metavar="DIR",
            help="run directory (default: runs/<model>-<data>[-<reward, * as x>]-seed<seed>; "
            "a RAM with --policy random: -random<glimpses> in place of the reward, since "
            "2033256)",
        )
        p.add_argument(
            "--resume",
            action="store_true",
            help="continue the run in --out exactly where it stopped",
        )
        add_dataclass_args(p, TrainConfig, title="training")
        add_dataclass_args(p, cls.config_class, title=f"{name} model")
        p.set_defaults(handler=cmd_train)

    p = sub.add_parser("eval", help="evaluate a trained run (its best checkpoint) on a dataset")
    p.add_argument("run", metavar="RUN_DIR", help="a run directory written by ramlab train")
    p.add_argument(
        "--data",
        choices=sorted(DATASETS),
        help="dataset of the same canvas size (default: the run's)",
    )
    p.add_argument("--split", choices=("val", "test"), default="test", help="split (default test)")
    add_policy_args(p)
    p.add_argument(
        "--limit",
        type=int,
        help="evaluate N scenes, a fixed random subset of the split (the same for every run)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default auto)")
    p.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    add_threads_arg(p)
    p.set_defaults(handler=cmd_eval)


def run_config_from_args(args: argparse.Namespace, *, saved: dict | None = None) -> RunConfig:
    """The run's config from the command line: the defaults (a resume: the run's own saved
    config, `saved`), then the config file's settings, then the options given."""
    base: dict = {"model": args.model, "data": "translated60"}
    if saved is not None:  # a field the command leaves out keeps the run's value, not the default
        base = {
            **saved,
            "train": dict(saved.get("train") or {}),
            "model_config": dict(saved.get("model_config") or {}),
        }
    if args.config:
        loaded = load_yaml(config_path(args.config))
        if not loaded:  # would train the defaults, as if no --config were given
            raise RamlabError(
                f"{args.config}: the config file holds no settings; give one that does, a recipe "
                f"({', '.join(recipe_names())}), or no --config"
            )
        if loaded.get("model", args.model) != args.model:
            raise RamlabError(f"{args.config} is a config for model {loaded['model']!r}, not {args.model!r}")
        for key, value in loaded.items():
            sections = isinstance(value, dict) and isinstance(base.get(key), dict)
            base[key] = {**base[key], **value} if sections else value
        base["model"] = args.model
    if args.data:
        base["data"] = args.data
    given = vars(args)
    train_over = {k: given[k] for k in field_names(TrainConfig) if k in given}
    model_over = {k: given[k] for k in field_names(model_config_class(args.model)) if k in given}
    # Checked once merged: a file's setting may need an option given beside it (and the reverse).
    for section, over in (("train", train_over), ("model_config", model_over)):
        given_there = base.get(section) or {}
        if not isinstance(given_there, dict):
            raise RamlabError(f"{args.config}: {section}: expected a mapping, got {given_there!r}")
        base[section] = {**given_there, **over}
    where = args.config or "options"
    if args.config and (train_over or model_over):  # the fault may be a flag's, not the file's
        where = f"{args.config} with the options given"
    return RunConfig.from_dict(base, where=where)


def _saved_config(out: Path) -> dict | None:
    """The run's config: its config.yaml, else (lost) the one last.pt holds; None when there
    is none, or it is damaged or refused (the trainer's resume then says what to do)."""
    from ramlab.checkpoint import load_checkpoint

    try:
        if (out / "config.yaml").is_file():
            saved = load_yaml(out / "config.yaml")
        elif (out / "last.pt").is_file():
            saved = load_checkpoint(out / "last.pt").get("config")
        else:
            return None
        RunConfig.from_dict(saved, where=str(out / "config.yaml"))
    except (RamlabError, AttributeError, TypeError):
        return None
    return saved


def refuse_unused_options(args: argparse.Namespace, config: RunConfig) -> None:
    """A fresh run given an option it would never read (`--momentum` under Adam, a schedule's
    options under another schedule) is refused: it would do nothing. (A resume of an existing
    run ignores such values with a note instead: `runconfig.keep_unused`.)"""
    given = [k for k in field_names(TrainConfig) if k in vars(args)]
    unused = sorted(set(given) & unused_fields(config.train, checkpointed=False))
    if unused:
        raise RamlabError(
            "; ".join(f"--{k.replace('_', '-')} is {READ_BY[k][0]}" for k in unused)
            + f" (this run: --optimizer {config.train.optimizer}, --schedule {config.train.schedule}): "
            "it would do nothing; leave it out, or choose what reads it"
        )


def default_run_dir(config: RunConfig) -> Path:
    reward = getattr(config.model_config, "reward", None)
    tag = f"-{reward.replace('*', 'x')}" if reward else ""
    if getattr(config.model_config, "policy", "learned") == "random":  # the reward is not read
        tag = f"-random{config.model_config.glimpses}"
    return Path("runs") / f"{config.model}-{config.data}{tag}-seed{config.train.seed}"


def cmd_train(args: argparse.Namespace) -> int:
    from ramlab.metrics import check_tensorboard
    from ramlab.trainer import Trainer

    config = run_config_from_args(args)
    out = Path(args.out) if args.out else default_run_dir(config)
    run_files = ("config.yaml", "last.pt", "best.pt", "result.json")
    holds_a_run = any((out / name).is_file() for name in run_files)
    saved = _saved_config(out) if args.resume else None
    if saved is not None and saved.get("model") == args.model:
        # A resume changes what its command gives, no more: `--resume` alone continues a
        # `--test false` run as one (it went back to the default, true, and read the test split).
        config = run_config_from_args(args, saved=saved)
    if not (args.resume and holds_a_run):  # a fresh run
        refuse_unused_options(args, config)
    if config.train.tensorboard:
        check_tensorboard()  # before the run's folder and scenes
    if args.resume and not holds_a_run:
        # a typo'd --out would go unseen
        print(f"note: {out} holds no run to resume; starting one there", file=sys.stderr)
    result = Trainer(config, out, command=shlex.join(["ramlab", *sys.argv[1:]])).fit(resume=args.resume)
    test = "not measured (--test false)" if result["test_error"] is None else f"{result['test_error']:.2f}%"
    how = [result.get("test_protocol"), result.get("test_count")]  # a kept result may lack them
    if result["test_error"] is not None and isinstance(how[0], str) and isinstance(how[1], int):
        test += f" ({how[0]}, {how[1]:,} test scenes)"
    params, seconds = result.get("params"), result.get("train_seconds")  # a kept result may lack them
    print(
        f"{out}: test error {test}, val error {result['val_error']:.2f}%"
        + (f", {params:,} parameters" if isinstance(params, int) else "")
        + (f", {seconds:.0f} s of training" if isinstance(seconds, int | float) else "")
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ramlab.device import set_threads
    from ramlab.run import evaluate_run

    if args.rollouts < 1:
        raise RamlabError(f"--rollouts must be >= 1, got {args.rollouts}")
    if args.limit is not None and args.limit < 1:  # before the split is built
        raise RamlabError(f"--limit must be >= 1 (leave it out for all scenes), got {args.limit}")
    if args.json is not None:
        check_json_target(args.json, keys=("run", "split", "error"), what="an evaluation")
    set_threads(args.threads)
    result = evaluate_run(
        args.run,
        data=args.data,
        split=args.split,
        sample=args.sample,
        rollouts=args.rollouts,
        limit=args.limit,
        device=args.device,
    )
    text = json.dumps(result, indent=2)
    print(text)  # first: a --json that cannot be written loses nothing
    if args.json:
        write_json(args.json, result)
    return 0
