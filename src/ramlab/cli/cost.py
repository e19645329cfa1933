"""`ramlab cost`: parameters, FLOPs, latency, throughput and peak memory per model and image size."""

from __future__ import annotations

import argparse

from ramlab.config import add_threads_arg, positive_int_list
from ramlab.cost import DEFAULT_MODELS, DEFAULT_SIZES, measure_costs, write_cost_json
from ramlab.cost_rows import REPEATS, format_cost_table
from ramlab.device import set_threads
from ramlab.errors import RamlabError
from ramlab.files import check_json_target
from ramlab.models.registry import model_class


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cost",
        help="measure parameters, FLOPs, latency, throughput and peak memory per image size",
        description="Measure each model's inference cost on square images of each size (the RAM "
        "adds glimpse scales for larger images) and print a table with the ResNet / RAM ratios.",
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=[",".join(DEFAULT_MODELS)],
        metavar="NAME",
        help=f"model names, by commas or spaces (default: {','.join(DEFAULT_MODELS)})",
    )
    p.add_argument(
        "--sizes",
        nargs="+",
        type=positive_int_list,
        default=[list(DEFAULT_SIZES)],
        metavar="N",
        help=f"image sides in pixels, by commas or spaces (default: {','.join(map(str, DEFAULT_SIZES))})",
    )
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    p.add_argument(
        "--batch",
        type=int,
        default=256,
        help="throughput batch, capped at 256 images of 100×100 pixels (16 times that on CUDA) (default 256)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=REPEATS,
        help=f"timed calls per measurement, the median taken (default {REPEATS})",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="time the compiled fast path (torch.compile; CUDA graphs on a GPU) instead of the eager "
        "pass; FLOPs and peak memory are the eager pass's either way. A graph per model, size and "
        "batch: tens of seconds each to compile",
    )
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="NAME|FILE|RUN_DIR",
        help="measure a config's model as it trains (a recipe name, e.g. translated60, a run's "
        "config.yaml or its folder), adapted to each size, instead of that model's defaults; repeatable, one "
        "per model",
    )
    add_threads_arg(p)
    p.set_defaults(handler=cmd_cost)


def model_configs(names: list[str]) -> tuple[dict, dict]:
    """({model: its model config}, {model: the image side it trains on}) from --config recipe
    names or files; a RamlabError for two configs of one model."""
    from ramlab.data.datasets import image_size
    from ramlab.runconfig import RunConfig, config_path

    configs: dict = {}
    sizes: dict = {}
    for name in names:
        run = RunConfig.load(config_path(name))
        if run.model in configs:
            raise RamlabError(f"--config {name}: a second config of {run.model}; give one per model")
        configs[run.model], sizes[run.model] = run.model_config, image_size(run.data)[0]
    return configs, sizes


def cmd_cost(args: argparse.Namespace) -> int:
    models = [name.strip() for given in args.models for name in given.split(",") if name.strip()]
    if not models:
        raise RamlabError("--models needs at least one model name")
    for name in models:
        model_class(name)  # an unknown name lists the valid ones
    sizes = [size for given in args.sizes for size in given]  # `28,60 100` -> [28, 60, 100]
    for flag, values in (("--models", models), ("--sizes", sizes)):
        twice = [v for i, v in enumerate(values) if v in values[:i]]
        if twice:
            raise RamlabError(f"{flag}: {twice[0]} is given twice")
    if args.batch < 1 or args.repeats < 1:
        raise RamlabError("--batch and --repeats must be >= 1")
    if args.json is not None:
        check_json_target(args.json, keys=("rows",), what="a cost table")
    configs, trained_sizes = model_configs(args.config)
    unused = sorted(set(configs) - set(models))
    if unused:
        raise RamlabError(f"--config gives {', '.join(unused)}, which --models does not measure")
    set_threads(args.threads)
    rows = measure_costs(
        models,
        sizes,
        device=args.device,
        batch=args.batch,
        repeats=args.repeats,
        configs=configs,
        compiled=args.compile,
        trained_sizes=trained_sizes,
    )
    print(format_cost_table(rows))
    if args.json:
        print(f"wrote {write_cost_json(rows, args.json)}")
    return 0
