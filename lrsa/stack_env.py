"""The local stack's address for every other command: `lrsa stack up` writes it, the rest read it.

`lrsa stack up` may not get the documented 127.0.0.1:9092 (a data dir that keeps other ports, a
multi-broker cluster, `--kafka-port 0`). It writes the address it got to an env file,
``<state dir>/stack.env`` (lrsa/paths.py), one ``LRSA_BOOTSTRAP_SERVERS=host:port,...`` line that
a shell can also ``source``; `lrsa stack down` removes it. Every command's bootstrap-servers
default comes from :func:`default_bootstrap`, so the order is: the flag, then the environment
variable, then this file, then 127.0.0.1:9092.

``LRSA_STACK_ENV`` names another file; set it empty to ignore the file (the test suite does, so
a developer's running stack cannot leak into it).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field

from lrsa.paths import state_dir

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
VARIABLE = "LRSA_BOOTSTRAP_SERVERS"


def stack_env_path() -> Path | None:
    override = os.environ.get("LRSA_STACK_ENV")
    if override is not None:
        return Path(override) if override else None
    return state_dir() / "stack.env"


def read_bootstrap(path: Path | None = None) -> str | None:
    path = path or stack_env_path()
    if path is None or not path.is_file():
        return None
    for line in path.read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key.removeprefix("export ").strip() == VARIABLE and value.strip():
            return value.strip().strip("'\"")
    return None


def default_bootstrap() -> str:
    return read_bootstrap() or DEFAULT_BOOTSTRAP


def write(bootstrap: str) -> Path | None:
    path = stack_env_path()
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"# written by `lrsa stack up`; read by every lrsa command; `lrsa stack down` removes it\n"
                   f"{VARIABLE}={bootstrap}\n")
    tmp.replace(path)
    return path


def remove() -> None:
    path = stack_env_path()
    if path is not None:
        path.unlink(missing_ok=True)


def bootstrap_field(**kwargs: Any) -> Any:
    """The bootstrap-servers field of every command's settings: one description, one default."""
    return Field(default_factory=default_bootstrap, description="Kafka bootstrap servers, comma separated "
                 "(default: the address `lrsa stack up` wrote, else 127.0.0.1:9092)", **kwargs)
