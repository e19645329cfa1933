"""A registry of models: `build_model(name, config, image_size=...)` for every model."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from ramlab.config import from_dict
from ramlab.errors import unknown_name
from ramlab.models.base import Model

MODELS: dict[str, type[Model]] = {}


def register_model(name: str):
    def wrap(cls: type[Model]) -> type[Model]:
        MODELS[name] = cls
        cls.registry_name = name
        return cls

    return wrap


def _load() -> None:
    """Import every module of ramlab.models once, so that their models register."""
    import ramlab.models as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"ramlab.models.{info.name}")


def model_class(name: str) -> type[Model]:
    _load()
    if name not in MODELS:
        raise unknown_name("model", name, MODELS)
    return MODELS[name]


def model_config_class(name: str) -> type:
    return model_class(name).config_class


def model_names() -> list[str]:
    _load()
    return sorted(MODELS)


def build_model(
    name: str, config: Any = None, *, image_size: tuple[int, int], num_classes: int = 10
) -> Model:
    """Build a registered model; `config` is its config dataclass, a dict, or None (defaults)."""
    cls = model_class(name)
    if config is None or isinstance(config, dict):
        config = from_dict(cls.config_class, config or {}, where=f"{name} config")
    return cls(config=config, image_size=image_size, num_classes=num_classes)
