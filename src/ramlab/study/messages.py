"""A wrong preset as one RamlabError: a line per problem that pydantic found,

    FILE: KEY.PATH: what is wrong; allowed: the valid keys or values

where KEY.PATH is written as in the YAML (`runs[2] (name).model_config.glimpses`: a run
group is named beside its index), and a problem inside a more specific one is left out.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ramlab.errors import RamlabError
from ramlab.study.sections import section_keys
from ramlab.study.values import NAME

EXPECTED = {
    "int_type": "int",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "text",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
}


def preset_error(error: ValidationError, *, source: str, raw: dict) -> RamlabError:
    """The RamlabError of a preset file (`source`, read as `raw`) that failed validation."""
    problems = error.errors(include_url=False)
    locs = [tuple(p["loc"]) for p in problems]
    lines = []
    for problem, loc in zip(problems, locs, strict=True):
        if any(other != loc and other[: len(loc)] == loc for other in locs):
            continue  # e.g. "too short" after its only item failed: the item says why
        lines.append(f"{source}: {key_path(loc, raw)}: {describe(problem)}")
    return RamlabError("\n".join(dict.fromkeys(lines)))


def key_path(loc: tuple, raw: dict) -> str:
    """('runs', 0, 'data') -> 'runs[0] (name).data', as the key is written in the file."""
    parts: list[str] = []
    for i, part in enumerate(loc):
        if part == "[key]":  # pydantic's mark of a mapping's key (the key itself is the part before)
            continue
        if isinstance(part, int):
            text = f"{parts.pop() if parts else ''}[{part}]"
            if loc[:i] == ("runs",):
                text += _group_name(raw, part)
            parts.append(text)
        else:
            parts.append(str(part))
    return ".".join(parts) or "(the whole file)"


def _group_name(raw: dict, index: int) -> str:
    runs = raw.get("runs")
    entry = runs[index] if isinstance(runs, list) and index < len(runs) else None
    name = entry.get("name") if isinstance(entry, dict) else None
    return f" ({name})" if isinstance(name, str) and NAME.match(name) else ""


def describe(problem: dict[str, Any]) -> str:
    kind, ctx, value = problem["type"], problem.get("ctx") or {}, problem.get("input")
    if kind == "ramlab":  # ours: says what is allowed
        return problem["msg"]
    if kind == "missing":
        return "missing: this key is required"
    if kind == "greater_than_equal":
        return f"must be a whole number >= {ctx['ge']}; got {_short(value)}"
    if kind == "less_than_equal":
        return f"must be a whole number <= {ctx['le']}; got {_short(value)}"
    if kind == "too_short":
        return f"needs at least {ctx['min_length']} item(s); got {_short(value)}"
    if kind == "model_type":
        return (
            f"expected a mapping with keys {', '.join(section_keys(ctx['class_name']))}; got {_short(value)}"
        )
    if kind in EXPECTED:
        return f"expected {EXPECTED[kind]}; got {_short(value)}"
    return f"{problem['msg']}; got {_short(value)}"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
