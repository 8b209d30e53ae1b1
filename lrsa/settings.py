"""Settings plumbing shared by every command: pydantic-settings with `LRSA_` env overrides.

Precedence: command-line flag > environment variable (LRSA_<FIELD>) > default.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

S = TypeVar("S", bound=BaseSettings)
log = logging.getLogger(__name__)

# LRSA_ variables read outside a settings class (the Triton python backend's checkpoint) and the
# prefix the test doubles use; every other LRSA_ variable must name a field of a settings class.
# Read straight from the environment, not through a settings class: where files live
# (lrsa/paths.py, lrsa/stack_env.py, the model caches) and the checkpoint override.
OTHER_ENV_VARS = {"LRSA_CHECKPOINT", "LRSA_STATE_DIR", "LRSA_STACK_ENV", "LRSA_MODEL_CACHE", "LRSA_OFFLINE_MODELS"}
IGNORED_ENV_PREFIXES = ("LRSA_TEST_",)

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


def _settings_classes() -> list[type[BaseSettings]]:
    """Every settings class imported so far (the command modules import theirs to build flags)."""
    seen, todo = [], [BaseSettings]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in seen:
                seen.append(sub)
                todo.append(sub)
    return seen


def known_env_names() -> set[str]:
    """The LRSA_ variables the settings classes imported so far read."""
    names = set(OTHER_ENV_VARS)
    for cls in _settings_classes():
        prefix = cls.model_config.get("env_prefix", "")
        if not prefix.startswith("LRSA_"):
            continue
        names.update(env_name(cls, f).upper() for f in cls.model_fields)
    return names


def unknown_env_vars(environ: Any = None) -> list[tuple[str, str | None]]:
    """(variable, closest known variable or None) for each LRSA_ variable no setting reads.
    `NAME__KEY` of a known NAME (a nested field) counts as known."""
    environ = os.environ if environ is None else environ
    known = known_env_names()
    unknown = []
    for var in sorted(environ):
        upper = var.upper()
        if (not upper.startswith("LRSA_") or upper in known or upper.startswith(IGNORED_ENV_PREFIXES)
                or upper.split("__", 1)[0] in known):
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.6)
        unknown.append((var, close[0] if close else None))
    return unknown


_reported_env = False


def report_unknown_env(environ: Any = None) -> list[tuple[str, str | None]]:
    """Warn (once per process) about each LRSA_ variable that no setting reads: a misspelt
    variable is otherwise silently ignored. Names only; values (secrets) are never logged."""
    global _reported_env
    if _reported_env and environ is None:
        return []
    _reported_env = environ is None or _reported_env
    unknown = unknown_env_vars(environ)
    for var, close in unknown:
        log.warning("environment variable %s is not a setting and is ignored%s", var,
                    f"; did you mean {close}?" if close else "")
    return unknown


def settings_from_args(cls: type[S], args: argparse.Namespace, **extra: Any) -> S:
    """Build `cls` from env + the flags the user actually gave (argparse defaults are None).
    LRSA_ variables that no setting reads (misspelt ones) are reported first."""
    report_unknown_env()
    given = {k: v for k, v in vars(args).items() if v is not None and k in cls.model_fields}
    try:
        return cls(**{**given, **extra})
    except ValidationError as e:
        raise SettingsError(f"invalid settings: {e}") from None


def field_help(cls: type[BaseSettings], name: str) -> str:
    """Help text for a flag mirroring a settings field: its description, env var and default."""
    f = cls.model_fields[name]
    value = f.default_factory() if f.default_factory is not None else f.default  # factories: as of now
    default = "required" if f.is_required() else value if value is not None else "none"
    return f"{f.description or ''} (env {env_name(cls, name)}; default {default})".strip()


def add_settings_flags(parser: argparse.ArgumentParser, cls: type[BaseSettings],
                       fields: list[str] | None = None) -> None:
    """One `--field-name` flag per settings field (default None, so env vars and defaults apply).

    bool -> a pair of flags that say what they set: for a field `x`, `--x` sets True and `--no-x`
    False; for a field named `no_x`, `--no-x` sets True and `--x` False (argparse's
    BooleanOptionalAction would read `--no-x` as the negative of `--x`, so `--no-rationale` set
    no_rationale=False). Literal -> choices; Optional[X] -> X. Fields of other shapes (dicts,
    lists) are left to env vars. Help text is escaped for argparse's %-formatting.
    """
    names = list(cls.model_fields)
    target = _grouped(parser, cls, fields or names)
    for name in (list(target) if target else fields or names):
        parser = target[name] if target else parser
        kind, choices = _flag_type(cls.model_fields[name].annotation)
        if kind is None:
            continue
        flag = "--" + name.replace("_", "-")
        help_text = field_help(cls, name).replace("%", "%%")
        if kind is bool:
            positive = name[3:] if name.startswith("no_") else None
            if positive and positive not in names:  # `--no-x` True, `--x` False
                flags = {flag: True, "--" + positive.replace("_", "-"): False}
            else:  # `--x` True, `--no-x` False
                flags = {flag: True, "--no-" + flag[2:]: False}
            parser.add_argument(*flags, dest=name, action=_BoolFlag, values=flags, settings_cls=cls,
                                default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=name, type=kind, choices=choices, default=None,
                                metavar=None if choices else name.upper(), help=help_text)


def _grouped(parser: argparse.ArgumentParser, cls: type[BaseSettings], names: list[str]) -> dict[str, Any] | None:
    """field -> the argparse group its flag goes in, from the class's FLAG_GROUPS (title -> field
    names, a trailing "*" a prefix), in that order; fields no group names go in "other options".
    None: the class has no groups (one flat list)."""
    spec: dict[str, tuple[str, ...]] | None = getattr(cls, "FLAG_GROUPS", None)
    if not spec:
        return None

    def matches(name: str, patterns: tuple[str, ...]) -> bool:
        return any(name == p or (p.endswith("*") and name.startswith(p[:-1])) for p in patterns)

    groups = {title: parser.add_argument_group(title) for title in spec}
    rank: dict[str, tuple[int, int, int]] = {}
    for i, name in enumerate(names):  # a group's flags in the order of its patterns, then the fields'
        rank[name] = next(((g, p, i) for g, patterns in enumerate(spec.values())
                           for p, pattern in enumerate(patterns) if matches(name, (pattern,))), (len(spec), 0, i))
    out: dict[str, Any] = {}
    for name in sorted(names, key=rank.__getitem__):
        title = next((t for t, patterns in spec.items() if matches(name, patterns)), None)
        if title is None:
            groups.setdefault("other options", parser.add_argument_group("other options"))
            title = "other options"
        out[name] = groups[title]
    return out


class _BoolFlag(argparse.Action):
    """A flag pair of one boolean setting: each option string sets the value it is mapped to.
    `settings_cls` is the settings class whose field `dest` the flag mirrors."""

    def __init__(self, option_strings: list[str], dest: str, values: dict[str, bool],
                 settings_cls: type[BaseSettings], default: Any = None, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)
        self.values, self.settings_cls = values, settings_cls

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, self.values[option_string])

    def format_usage(self) -> str:
        return " | ".join(self.option_strings)


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


def settings_slice(cls: type, settings: Any, prefix: str, **overrides: Any) -> Any:
    """Dataclass `cls` built from the settings fields named `<prefix><field>` (e.g. ScalingPolicy
    from WorkerSettings' `pool_*`), so a policy class never copies settings field by field and a
    field added to one without the other fails at once (AttributeError naming it)."""
    import dataclasses

    return cls(**{f.name: getattr(settings, prefix + f.name)
                  for f in dataclasses.fields(cls) if f.name not in overrides}, **overrides)
