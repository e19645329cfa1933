"""What the report needs of each file it reads; a file that falls short raises `Damaged`.

A file is damaged when it cannot be read as UTF-8 text, does not parse, lacks a field the
report needs, or holds a value of the wrong type, or NaN or an infinity, where the report
computes with a number. The message of `Damaged` names the file and says what is wrong; the
report shows it beside the run (or file) it leaves out.

    read(path, parse, check)    parse(path) then check(data); None when the file is absent
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from ramlab.errors import RamlabError


class Damaged(ValueError):
    """A file the report cannot use; the message says which and why."""


def read(path: Path, parse: Callable[[Path], Any], check: Callable[[Any], None]) -> Any:
    """`parse(path)`, checked by `check`; None when the file does not exist."""
    if not path.exists():
        return None
    try:
        data = parse(path)
        check(data)
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
    except json.JSONDecodeError as exc:
        reason = f"not valid JSON ({exc})"
    except yaml.YAMLError as exc:
        reason = f"not valid YAML ({' '.join(str(exc).split())})"
    except OSError as exc:
        reason = f"cannot read ({exc.strerror or exc})"
    except Damaged as exc:
        reason = str(exc)
    except RamlabError as exc:  # a parser's own (a metrics log's damaged line names it)
        reason = str(exc).removeprefix(f"{path}: ")
    else:
        return data
    raise Damaged(f"{path.name}: {reason}")


def parse_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def parse_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def parse_jsonl(path: Path) -> list[Any]:
    """Every line that holds a JSON object (a line that starts with `{`)."""
    records = []
    for index, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip().startswith("{"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise Damaged(f"line {index}: not valid JSON ({exc.msg})") from None
    return records


@contextmanager
def within(where: str) -> Iterator[None]:
    """Say where in the file a `Damaged` raised inside was found."""
    try:
        yield
    except Damaged as exc:
        raise Damaged(f"{where}: {exc}") from None


# ---- values -------------------------------------------------------------------------------
def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def mapping(data: Any, what: str = "the file") -> dict:
    if not isinstance(data, dict):
        raise Damaged(f"{what} is not a mapping")
    return data


def number(data: dict, key: str, *, required: bool = False, positive: bool = False) -> None:
    """`data[key]` is a finite number (> 0 when `positive`); it may be absent unless required."""
    if key not in data and not required:
        return
    value = data.get(key)
    if value is None:
        raise Damaged(f"no {key}")
    if not is_number(value) or (positive and value <= 0):
        raise Damaged(f"{key} is {_shown(value)}, not a finite{' positive' if positive else ''} number")


def percent(data: dict, key: str) -> None:
    """`data[key]`, a number where present, is an error rate in 0..100."""
    if key in data and not 0 <= data[key] <= 100:
        raise Damaged(f"{key} is {_shown(data[key])}, not a percentage in 0..100")


def numbers(data: dict, key: str, *, required: bool = False) -> None:
    """`data[key]` is a non-empty list of finite numbers; it may be absent unless required."""
    if key not in data and not required:
        return
    value = data.get(key)
    if not isinstance(value, list) or not value or not all(is_number(v) for v in value):
        raise Damaged(f"{key} is {_shown(value)}, not a list of finite numbers")


def _shown(value: Any) -> str:
    """A value as its JSON spelling (NaN, null, "12"), cut short."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


# ---- files --------------------------------------------------------------------------------
def check_mapping(data: Any) -> None:
    """A YAML or JSON file that holds a mapping, or nothing."""
    if data is not None:
        mapping(data)


def check_config(data: Any) -> None:
    """config.yaml: the model and dataset names; `train` and `model_config` mappings."""
    config = mapping(data)
    for key in ("model", "data"):
        if not isinstance(config.get(key), str) or not config[key]:
            raise Damaged(f"no {key} name")
    for key in ("train", "model_config"):
        if key in config:
            mapping(config[key], key)
    seed = config.get("train", {}).get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise Damaged(f"train.seed is {seed!r}, not an integer")
    reward = config.get("model_config", {}).get("reward", "")
    if not isinstance(reward, str):
        raise Damaged(f"model_config.reward is {_shown(reward)}, not a reward's text")


def check_result(data: Any) -> None:
    """result.json: the test error, and numbers where the report averages them."""
    result = mapping(data)
    if "test_error" in result and result["test_error"] is None:  # trained with --test false
        raise Damaged(
            "finished without a test (--test false), so it has no test error to report: its "
            "test split is unread. To read it once, `ramlab train MODEL --out RUN_DIR --resume --test true`"
        )
    number(result, "test_error", required=True)
    percent(result, "test_error")
    for key in ("epochs", "epochs_run", "train_seconds", "best_epoch"):
        number(result, key)
    if "test_count" in result:
        count = result["test_count"]
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise Damaged(f"test_count is {_shown(count)}, not a whole number of scenes >= 1")
    numbers(result, "per_glimpse_test_error")


def check_records(records: list[Any]) -> None:
    """A JSONL file: a JSON object per line."""
    for line, record in enumerate(records, start=1):
        mapping(record, f"line {line}")


def check_metrics(records: list[Any]) -> None:
    """metrics.jsonl: a JSON object per line; a validation error is a number at an epoch."""
    check_records(records)
    for line, record in enumerate(records, start=1):
        if "val/error" in record:
            with within(f"line {line}"):
                number(record, "val/error", required=True)
                number(record, "epoch", required=True)


def check_evaluation(data: Any) -> None:
    """eval.json: FLOPs, the sampled error and where the glimpses go, each when present."""
    evaluation = mapping(data)
    number(evaluation, "flops", positive=True)
    if evaluation.get("sampled") is not None:
        number(mapping(evaluation["sampled"], "sampled"), "error", required=True)
    if evaluation.get("where") is not None:
        where = mapping(evaluation["where"], "where")
        numbers(where, "inside_bbox_percent", required=True)
        numbers(where, "distance_to_bbox_px", required=True)
        if len(where["inside_bbox_percent"]) != len(where["distance_to_bbox_px"]):
            raise Damaged("where: the two per-glimpse lists differ in length")


def check_robustness(data: Any) -> None:
    """robustness.json: how it was swept (where said), and per shift the error at each level."""
    sweep = mapping(data)
    for key, valid, what in (
        (
            "rollouts",
            lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
            "a whole number >= 1",
        ),
        (
            "limit",
            lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
            "null or a whole number >= 1",
        ),
        ("split", lambda v: isinstance(v, str), "a split's name"),
        ("sample", lambda v: isinstance(v, bool), "true or false"),
    ):
        if key in sweep and not valid(sweep[key]):
            raise Damaged(f"{key} is {_shown(sweep[key])}, not {what}")
    shifts = mapping(sweep.get("shifts"), "shifts")
    for name, entry in shifts.items():
        with within(f"shift {name}"):
            entry = mapping(entry, "the entry")
            numbers(entry, "levels", required=True)
            numbers(entry, "error", required=True)
            if len(entry["levels"]) != len(entry["error"]):
                raise Damaged(f"{len(entry['error'])} errors for {len(entry['levels'])} levels")
            trained = entry.get("trained")  # the training level: a value, a range [low, high] or none
            if not (
                trained is None
                or is_number(trained)
                or (isinstance(trained, list) and len(trained) == 2 and all(is_number(v) for v in trained))
            ):
                raise Damaged(f"trained is {_shown(trained)}, not null, a number or a range [low, high]")
            count = entry.get("count")
            if "count" in entry and not (
                isinstance(count, int) and not isinstance(count, bool) and count >= 1
            ):
                raise Damaged(f"count is {_shown(count)}, not a whole number >= 1")


COST_FIELDS = ("params", "flops", "latency_ms", "throughput", "peak_memory_mb")


def check_cost_row(row: dict) -> None:
    """A row of cost.json: a model's name, an image side in pixels, every measured quantity a
    positive number, and its FLOPs' breakdown (where given) numbers by part."""
    if not isinstance(row.get("model"), str) or not row["model"]:
        raise Damaged(f"model is {_shown(row.get('model'))}, not a model's name")
    size = row.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise Damaged(f"size is {_shown(size)}, not an image side in pixels")
    for key in COST_FIELDS:
        number(row, key, required=True, positive=True)
    breakdown = row.get("flops_breakdown", {})
    if not isinstance(breakdown, dict) or not all(is_number(v) for v in breakdown.values()):
        raise Damaged(f"flops_breakdown is {_shown(breakdown)}, not FLOPs by part")
