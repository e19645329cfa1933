"""Configuration: frozen dataclasses whose fields carry their help text, and YAML/CLI glue.

A field is declared with `param(default, "help")`; the help becomes `--help` text and the
dataclass's `__post_init__` validates values with a message a user understands. A run's
configuration (`RunConfig`) nests the trainer's config and the model's own config.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import re
import types
import typing
from collections.abc import Hashable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ramlab.errors import RamlabError

# A run's training fields that say how it ran, not what it computes (compile: the same losses
# to float rounding, tests/test_fastpath.py; only speed differs, as with device and threads):
# a study accepts a change of them for a run it made, and a report never tells runs apart by them.
HOW_IT_RAN = (
    "device",
    "compile",
    "threads",
    "progress",
    "tensorboard",
    "log_every",
    "checkpoint_every",
    "eval_batch_size",
)


def param(default: Any, help: str, **metadata: Any) -> Any:
    """A dataclass field with a default and help text (shown by `--help`)."""
    kwargs: dict[str, Any] = {"metadata": {"help": help, **metadata}}
    if isinstance(default, (list, dict, tuple)) and not isinstance(default, tuple):
        kwargs["default_factory"] = lambda: copy.deepcopy(default)  # each instance its own
    else:
        kwargs["default"] = default
    return field(**kwargs)


def choice(name: str, value: str, valid: typing.Iterable[str]) -> None:
    """Raise a clear error unless `value` is one of `valid`."""
    valid = tuple(valid)
    if value not in valid:
        raise RamlabError(f"{name} must be one of {', '.join(valid)}; got {value!r}")


def check_finite(obj: Any) -> None:
    """Raise a clear error for a float field of dataclass `obj` holding inf or NaN."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise RamlabError(f"{f.name} must be a finite number, got {value}")


def finite_float(text: str) -> float:
    """argparse type: a float that is neither inf nor NaN."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int_list(text: str) -> list[int]:
    """argparse type: comma-separated positive integers, e.g. "128,512,2048"."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def nonnegative_int(text: str) -> int:
    """argparse type: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def add_threads_arg(parser: argparse.ArgumentParser) -> None:
    """`--threads N` for a command that runs a model outside training (`train` takes it from
    TrainConfig); the command applies it with `ramlab.device.set_threads`."""
    parser.add_argument(
        "--threads",
        type=nonnegative_int,
        default=0,
        help="CPU threads for torch (0: torch's default; 1 is steadier beside another job)",
    )


def add_policy_args(parser: argparse.ArgumentParser) -> None:
    """`--sample` and `--rollouts M`: the policy an evaluation outside training reads the
    model with (`ramlab.evaluate`); the command checks that M >= 1."""
    parser.add_argument(
        "--sample",
        action="store_true",
        help="sample glimpse locations from a learned policy instead of taking its mean",
    )
    parser.add_argument(
        "--rollouts",
        type=int,
        default=1,
        metavar="M",
        help="average the class probabilities of M sampled rollouts per image (Monte Carlo; "
        "the result says so); default 1: one rollout",
    )


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: its keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if not isinstance(key, Hashable):  # `[a]: 1`: a list can be no key
                raise yaml.constructor.ConstructorError(
                    None, None, f"a key must be a name or a number, got {key!r}", key_node.start_mark
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} is given twice (lines {seen[key]} and {line}); keep one",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 reads 1e-3 (no dot) as text; read it as the number it is, as YAML 1.2 does. The
# dumper knows the same form, so that text which looks like it ("1e5", a folder's name) is
# written quoted and read back as text.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$")


class _Dumper(yaml.SafeDumper):
    """YAML's safe dumper, quoting text that `_UniqueKeyLoader` would read as a number."""


for _cls in (_UniqueKeyLoader, _Dumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789."))


def _base_type(tp: Any) -> Any:
    """int for `int | None`, etc."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0]) if len(args) == 1 else str
    return tp


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _optional(convert):
    def parse(text: str):
        return None if text.lower() in ("none", "null") else convert(text)

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, *, title: str) -> None:
    """Add `--field-name` options for each field of `cls`; unspecified options stay absent."""
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        tp = hints[f.name]
        base = _base_type(tp)
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        help_text = f"{f.metadata.get('help', '')} (default: {default})".replace("%", "%%")
        flag = "--" + f.name.replace("_", "-")
        is_optional = typing.get_origin(tp) in (typing.Union, types.UnionType)
        if base is bool:
            group.add_argument(
                flag,
                type=_parse_bool,
                metavar="BOOL",
                help=help_text,
                default=argparse.SUPPRESS,
                dest=f.name,
            )
        elif typing.get_origin(base) in (tuple, list):
            inner = typing.get_args(base)[0]
            group.add_argument(
                flag, type=inner, nargs="+", help=help_text, default=argparse.SUPPRESS, dest=f.name
            )
        else:
            convert = {float: finite_float}.get(base, base) if base in (int, float, str) else str
            if is_optional:
                convert = _optional(convert)
            group.add_argument(
                flag,
                type=convert,
                help=help_text,
                default=argparse.SUPPRESS,
                dest=f.name,
                metavar=f.name.upper(),
            )


def field_names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


def _fits(value: Any, tp: Any) -> bool:
    """Whether a YAML value has the type a field's hint asks for (bool is no number here)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(tp))
    if tp is type(None) or value is None:
        return tp is type(None) and value is None
    if origin is tuple:
        args = [a for a in typing.get_args(tp) if a is not Ellipsis] or [Any]
        return isinstance(value, (list, tuple)) and all(_fits(v, args[0]) for v in value)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return True  # Any, and types checked by the class itself


def _kind(tp: Any) -> str:
    """A field's type in words, for the message."""
    base = _base_type(tp)
    words = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}
    text = "a list" if typing.get_origin(base) is tuple else words.get(base, str(base))
    return text + (" or null" if type(None) in typing.get_args(tp) else "")


def from_dict(cls: type, data: dict[str, Any], *, where: str) -> Any:
    """Build `cls` from a dict, naming the file/section and the valid keys on a wrong key,
    and the key and the type it needs on a value of another type (a YAML `"false"` is text)."""
    if data is not None and not isinstance(data, dict):
        raise RamlabError(f"{where}: expected a mapping of keys to values; got {data!r}"[:200])
    data = dict(data or {})
    valid = field_names(cls)
    unknown = unknown_keys(data, valid)
    if unknown:
        raise RamlabError(f"{where}: unknown key(s) {unknown}; valid: {', '.join(sorted(valid))}")
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        if isinstance(value, str) and _base_type(hints[key]) is float:
            number = _number(value)  # YAML 1.1 reads 1e-3 as text
            data[key] = value = value if number is None else number
        if not _fits(value, hints[key]):
            raise RamlabError(f"{where}: {key}: expected {_kind(hints[key])}; got {value!r}"[:200])
        if typing.get_origin(_base_type(hints[key])) is tuple and isinstance(value, list):
            data[key] = tuple(value)
    try:
        return cls(**data)
    except (TypeError, RamlabError) as exc:  # the class's own checks, named by file and section
        raise RamlabError(f"{where}: {exc}") from None


def unknown_keys(data: dict[Any, Any], valid: set[str]) -> str:
    """The keys of `data` outside `valid`, as written ('' if none); a YAML key need not be text
    (`2:`, or YAML 1.1's `on:`, which is true)."""
    return ", ".join(sorted(str(k) if isinstance(k, str) else repr(k) for k in data if k not in valid))


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as plain YAML/JSON-friendly data (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {k: plain(v) for k, v in dataclasses.asdict(obj).items()}


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one dict with dotted keys; lists become tuples (hashable, comparable)."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): tuple(data) if isinstance(data, list) else data}


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # the recipes' ×, ±
    except FileNotFoundError:
        raise RamlabError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise RamlabError(f"{path}: a folder, not a YAML file") from None
    except UnicodeDecodeError:
        raise RamlabError(f"{path}: not a text (YAML) file") from None
    except yaml.YAMLError as exc:
        raise RamlabError(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RamlabError(f"{path}: expected a mapping of keys to values at the top level")
    return data


def yaml_value(text: str) -> Any:
    """One YAML value (a command line's `KEY=VALUE`), read as the config files are."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def save_yaml(path: str | Path, data: dict[str, Any], *, header: str = "") -> Path:
    """`data` as YAML, atomically; `header`: a comment line above it."""
    from ramlab.files import atomic_write

    text = (f"# {header}\n" if header else "") + yaml.dump(data, Dumper=_Dumper, sort_keys=False)
    return atomic_write(path, lambda f: f.write(text), mode="w")


__all__ = [
    "add_dataclass_args",
    "choice",
    "dataclass",
    "field_names",
    "flatten",
    "from_dict",
    "load_yaml",
    "param",
    "save_yaml",
    "to_dict",
]
