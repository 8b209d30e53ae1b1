"""Stage settings travel with the stage actors, never by the environment of the process they run in.

Ray does not pass the driver's environment to actors on other nodes, so the driver builds each
stage processor's settings itself (its env LRSA_SCORER_* / LRSA_RATIONALE_* plus the `lrsa run`
flags that override them), resolves relative paths against its own working directory, and hands
the values to every actor of the pool as a constructor argument (workers/stages/pool.py). An actor
rebuilds them with `restore`, which reads nothing from its own environment.

A processor takes settings when its class names a settings class (`settings_class`) and accepts
`settings=` in its constructor; the built-in processors are known here without importing them (the
rationale processor imports torch).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from lrsa.rationale.config import RationaleSettings
from workers.stages.score import ScorerSettings


class RationaleStageSettings(RationaleSettings):
    """Engine settings for the stage actors, env LRSA_RATIONALE_<FIELD>."""

    model_config = SettingsConfigDict(env_prefix="LRSA_RATIONALE_", env_nested_delimiter="__", extra="ignore")

    warmup: bool = Field(True, description="capture/compile the decode step when the actor starts")
    metrics_port: int | None = Field(None, ge=0, description="serve this actor's /metrics on this port (none: off)")


# processor path -> its settings class, for the processors whose module is heavy to import
BUILT_IN: dict[str, type[BaseSettings]] = {
    "workers.stages.rationale:RationaleProcessor": RationaleStageSettings,
    "workers.stages.score:ScoreProcessor": ScorerSettings,
}
# WorkerSettings field (an `lrsa run` flag) -> the stage settings field it overrides
FLAG_OVERRIDES: dict[type[BaseSettings], dict[str, str]] = {
    ScorerSettings: {"scorer_url": "url", "scorer_checkpoint": "checkpoint"},
    RationaleStageSettings: {"rationale_model": "model", "rationale_vlm_model": "vlm_model",
                             "rationale_device": "device"},
}


def import_path(path: str) -> Any:
    """'package.module:Name' (or 'package.module.Name') -> the object."""
    module, _, name = path.partition(":") if ":" in path else path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def settings_class(processor_path: str) -> type[BaseSettings] | None:
    """The settings class of a processor, or None when it takes no settings."""
    if processor_path in BUILT_IN:
        return BUILT_IN[processor_path]
    try:
        return getattr(import_path(processor_path), "settings_class", None)
    except (ImportError, AttributeError, ValueError):  # importable only where the actors run: they say so
        return None


def build(processor_path: str, worker: Any = None) -> dict[str, Any] | None:
    """The settings a stage's actors get, from this process's env and the worker's flags, with
    paths made absolute; None for a processor without settings."""
    cls = settings_class(processor_path)
    if cls is None:
        return None
    given = {field: getattr(worker, flag) for flag, field in FLAG_OVERRIDES.get(cls, {}).items()
             if worker is not None and getattr(worker, flag, None) is not None}
    return absolute_paths(cls(**given).model_dump())


def absolute_paths(values: dict[str, Any]) -> dict[str, Any]:
    """Path values, and strings naming an existing local file or folder (a model folder), made
    absolute: a relative path means nothing in an actor's working directory on another node."""
    out = {}
    for name, value in values.items():
        if isinstance(value, Path):
            value = value.expanduser().absolute()
        elif isinstance(value, str) and value and not value.startswith(("http://", "https://")) \
                and ("/" in value or value.startswith(".")) and Path(value).expanduser().exists():
            value = str(Path(value).expanduser().absolute())
        out[name] = value
    return out


def restore(processor_path: str, values: dict[str, Any]) -> BaseSettings:
    """The settings object in the actor, from the values alone: they were validated in the driver,
    and validating again would merge the actor's own environment in (pydantic-settings reads env
    even in model_validate)."""
    cls = settings_class(processor_path)
    if cls is None:
        raise TypeError(f"{processor_path} takes no settings")
    return cls.model_construct(**values)
