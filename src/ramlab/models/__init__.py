"""Models behind one interface (`ramlab.models.base.Model`), built by name from a registry."""

from ramlab.models.registry import MODELS, build_model, model_config_class, register_model

__all__ = ["MODELS", "build_model", "model_config_class", "register_model"]
