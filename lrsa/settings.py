"""Settings plumbing shared by every command: pydantic-settings with `LRSA_` env overrides.

Precedence: command-line flag > environment variable (LRSA_<FIELD>) > default.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TypeVar

from pydantic_settings import BaseSettings, SettingsConfigDict

S = TypeVar("S", bound=BaseSettings)

# The shared data sits beside the repository checkout (../shared/data/mabsa).
DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mabsa"


class LrsaSettings(BaseSettings):
    """Base for every settings class: env vars LRSA_<FIELD>, nested with `__`."""

    model_config = SettingsConfigDict(env_prefix="LRSA_", env_nested_delimiter="__", extra="ignore")


def settings_from_args(cls: type[S], args: argparse.Namespace, **extra: Any) -> S:
    """Build `cls` from env + the flags the user actually gave (argparse defaults are None)."""
    given = {k: v for k, v in vars(args).items() if v is not None and k in cls.model_fields}
    return cls(**{**given, **extra})


def field_help(cls: type[BaseSettings], name: str) -> str:
    """Help text for a flag mirroring a settings field: its description, env var and default."""
    f = cls.model_fields[name]
    prefix = cls.model_config.get("env_prefix", "")
    default = f.default if f.default is not None else "none"
    return f"{f.description or ''} (env {prefix}{name.upper()}; default {default})".strip()
