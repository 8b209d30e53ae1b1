"""Settings plumbing shared by every command: pydantic-settings with `LRSA_` env overrides.

Precedence: command-line flag > environment variable (LRSA_<FIELD>) > default.
"""

from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

S = TypeVar("S", bound=BaseSettings)

# The shared data sits beside the repository checkout (../shared/data/mabsa).
DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mabsa"


class LrsaSettings(BaseSettings):
    """Base for every settings class: env vars LRSA_<FIELD>, nested with `__`."""

    model_config = SettingsConfigDict(env_prefix="LRSA_", env_nested_delimiter="__", extra="ignore",
                                      populate_by_name=True)


def data_dir_field(description: str = "folder with twitter2015/, twitter2017/ and rationales/") -> Any:
    """The MABSA data folder: one env var, LRSA_DATA_DIR, for every command that reads it."""
    return Field(DEFAULT_DATA_DIR, validation_alias="LRSA_DATA_DIR", description=description)


def env_name(cls: type[BaseSettings], name: str) -> str:
    """The environment variable that sets field `name` of `cls`."""
    alias = cls.model_fields[name].validation_alias
    return alias if isinstance(alias, str) else f"{cls.model_config.get('env_prefix', '')}{name.upper()}"


class SettingsError(ValueError):
    """Flags or env vars that do not validate; the `lrsa` command reports it and exits 2."""


def settings_from_args(cls: type[S], args: argparse.Namespace, **extra: Any) -> S:
    """Build `cls` from env + the flags the user actually gave (argparse defaults are None)."""
    given = {k: v for k, v in vars(args).items() if v is not None and k in cls.model_fields}
    try:
        return cls(**{**given, **extra})
    except ValidationError as e:
        raise SettingsError(f"invalid settings: {e}") from None


def field_help(cls: type[BaseSettings], name: str) -> str:
    """Help text for a flag mirroring a settings field: its description, env var and default."""
    f = cls.model_fields[name]
    default = f.default if f.default is not None else "none"
    return f"{f.description or ''} (env {env_name(cls, name)}; default {default})".strip()


def add_settings_flags(parser: argparse.ArgumentParser, cls: type[BaseSettings],
                       fields: list[str] | None = None) -> None:
    """One `--field-name` flag per settings field (default None, so env vars and defaults apply).

    bool -> --flag/--no-flag; Literal -> choices; Optional[X] -> X. Fields of other shapes
    (dicts, lists) are left to env vars.
    """
    for name in fields or list(cls.model_fields):
        kind, choices = _flag_type(cls.model_fields[name].annotation)
        if kind is None:
            continue
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None,
                                help=field_help(cls, name))
        else:
            parser.add_argument(flag, dest=name, type=kind, choices=choices, default=None,
                                metavar=None if choices else name.upper(), help=field_help(cls, name))


def _flag_type(annotation: Any) -> tuple[type | None, tuple | None]:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return type(args[0]), args
    if origin is typing.Union or isinstance(annotation, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _flag_type(inner[0]) if len(inner) == 1 else (str, None)
    if isinstance(annotation, type) and origin is None:
        return annotation, None
    return None, None
