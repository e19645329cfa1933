"""A preset file's sections: pydantic models of known keys, whose errors name the allowed keys.

`Section` is the base of every section of `ramlab.study.schema`; `config_section(cls)` is a
section taking any field of a config dataclass with its type (tuples as YAML lists), and
`fields_of(cls)` the type of such a section given as the dict of the keys set.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, create_model, model_validator

from ramlab.study.values import invalid

_SECTIONS: dict[str, type[Section]] = {}  # class name -> class, for "expected a mapping with keys"


def section_keys(class_name: str) -> list[str]:
    """The keys of the section class named so (as in pydantic's `model_type` errors)."""
    return _SECTIONS[class_name].yaml_keys() if class_name in _SECTIONS else []


class Section(BaseModel):
    """A mapping of known keys (an unknown one lists the allowed keys), values as YAML gives them."""

    model_config = ConfigDict(extra="forbid", strict=True, protected_namespaces=())

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        _SECTIONS[cls.__name__] = cls

    @classmethod
    def yaml_keys(cls) -> list[str]:
        """The keys of this section, as the YAML spells them."""
        return [info.alias or name for name, info in cls.model_fields.items()]

    @model_validator(mode="before")
    @classmethod
    def _name_the_allowed_keys(cls, data: Any) -> Any:
        # extra="forbid" refuses an unknown key; this says which keys are allowed instead.
        if isinstance(data, dict):
            for key in data:
                if key not in cls.yaml_keys():
                    raise invalid((key,), f"unknown key; allowed: {', '.join(cls.yaml_keys())}", data[key])
        return data


def _yaml_type(tp: Any) -> Any:
    """A config field's type as YAML writes it: tuples are lists."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        return list[typing.get_args(tp)[0]]
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_yaml_type(a) for a in typing.get_args(tp))]  # noqa: UP007
    return tp


@functools.cache
def config_section(cls: type) -> type[Section]:
    """A section taking any of dataclass `cls`'s fields, in their order, with their types."""
    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {
        f.name: (_yaml_type(hints[f.name]), Field(None, description=f.metadata.get("help")))
        for f in dataclasses.fields(cls)
    }
    return create_model(cls.__name__, __base__=Section, **fields)


def fields_of(cls: type) -> Any:
    """The type of a section of `cls`'s fields, given as the dict of the keys set (null: {})."""

    def check(value: Any) -> dict:
        if value is None:
            return {}
        return config_section(cls).model_validate(value).model_dump(exclude_unset=True)

    return Annotated[dict, PlainValidator(check)]
