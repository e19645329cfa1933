"""The value types of the preset schema, and errors that say what is allowed.

    one_of(kind, allowed)    a name from allowed(): `unknown model 'vit'; allowed: convnet, ...`
    names_of(kind, allowed)  a name or a non-empty list of names (a tuple)
    GroupName, Device, Count, Levels, Recipe

`problem(message)` is a validation error with our message; `invalid(loc, message)` one at a
key below the model that raises it (pydantic prefixes the raising validator's location).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from pydantic import Field, PlainValidator, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from ramlab.data.datasets import DATASETS
from ramlab.device import is_device_name
from ramlab.models.registry import model_names
from ramlab.runconfig import recipe_names

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def problem(message: str) -> PydanticCustomError:
    """A validation error whose message is ours (no context: the text is not a template)."""
    return PydanticCustomError("ramlab", message)


def invalid(loc: tuple, message: str, value: Any = None) -> ValidationError:
    """A validation error at `loc`, relative to the model being validated: raised in a validator,
    pydantic prefixes the validator's own location."""
    return ValidationError.from_exception_data(
        "preset", [InitErrorDetails(type=problem(message), loc=loc, input=value)]
    )


def shift_names() -> list[str]:
    from ramlab.robustness import SHIFTS  # imports the evaluation code: only when checking

    return list(SHIFTS)


def one_of(kind: str, allowed: Callable[[], Sequence[str]]) -> Any:
    """The type of a name from `allowed()`: a wrong one is listed with the valid ones."""

    def check(value: Any) -> str:
        names = allowed()
        if value not in names:
            raise problem(f"unknown {kind} {value!r}; allowed: {', '.join(names)}")
        return value

    return Annotated[str, PlainValidator(check)]


def names_of(kind: str, allowed: Callable[[], Sequence[str]] | None = None) -> Any:
    """The type of a name or a non-empty list of names (as a tuple), each from `allowed()`
    (None: any name; the preset checks them against its groups)."""

    def check(value: Any) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        valid = allowed() if allowed else None
        if not isinstance(items, (list, tuple)) or not items or not all(isinstance(i, str) for i in items):
            choices = f" from: {', '.join(valid)}" if valid else ""
            raise problem(f"expected a {kind} or a list of {kind}s{choices}; got {value!r}")
        for i, item in enumerate(items):
            if valid is not None and item not in valid:
                raise problem(f"unknown {kind} {item!r}; allowed: {', '.join(valid)}")
            if item in items[:i]:
                raise problem(f"{kind} {item!r} is listed twice")
        return tuple(items)

    return Annotated[tuple[str, ...], PlainValidator(check)]


def _group_name(value: Any) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise problem(f"expected a name of letters, digits, _ . + -; got {value!r}")
    return value


def _device(value: Any) -> str:
    if not is_device_name(value):
        raise problem(f"expected auto, cpu, cuda or cuda:N; got {value!r}")
    return value


def _recipe(value: Any) -> bool | str:
    if isinstance(value, bool) or value in recipe_names():
        return value
    raise problem(f"expected true, false or a recipe name ({', '.join(recipe_names())}); got {value!r}")


def _number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise problem(f"expected a number; got {value!r}")
    return value


Count = Annotated[int, Field(ge=1)]
"""A whole number >= 1."""
MAX_SEEDS = 100
Seeds = Annotated[int, Field(ge=1, le=MAX_SEEDS)]
"""Seeds of a study or a group: 1..MAX_SEEDS (the paper preset's 3 are already ~300 jobs)."""
ModelName = one_of("model", model_names)
DatasetName = one_of("dataset", lambda: list(DATASETS))
DatasetNames = names_of("dataset", lambda: list(DATASETS))
GroupName = Annotated[str, PlainValidator(_group_name)]
Device = Annotated[str, PlainValidator(_device)]
Recipe = Annotated[bool | str, PlainValidator(_recipe)]
"""true (each dataset's own recipe), false, or one recipe's name (for every dataset)."""
Levels = Annotated[list[Annotated[float, PlainValidator(_number)]], Field(min_length=1)]
