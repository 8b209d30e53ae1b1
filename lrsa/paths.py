"""Where the project's files live, in a source checkout and in an installed wheel.

Two kinds of files, looked up in one place so no module guesses from its own ``__file__``:

- **Shipped resources** (read-only): the packed default model (``models/``), the sample posts
  (``samples/``), the Kafka launcher's pom and log config and the entity aliases (``deploy/``),
  the message schemas (``schemas/``). In a checkout they are the checkout's files; a wheel
  installs them as data files under ``<prefix>/share/lrsa-stream/`` (pyproject.toml,
  ``[tool.setuptools.data-files]``), which :func:`resource` finds from the installed package.
- **State** (writable): the embedded broker's data, the aggregator's state, unpacked and
  assembled models, the Kafka jars of an installed wheel. :func:`state_dir` is
  ``$LRSA_STATE_DIR`` when set; else ``.cache/`` of a checkout (where it has always been, so
  a checkout's caches stay valid); else ``$XDG_CACHE_HOME/lrsa`` (``~/.cache/lrsa``), never
  the installed package's folder.

:func:`workspace` is where a command writes what the user asked for by default (the first-run
checkpoint): the checkout, or the state dir of an installed wheel.
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
DATA_SUBDIR = Path("share") / "lrsa-stream"


def is_checkout(root: Path = PACKAGE_ROOT) -> bool:
    """True when the code runs from a source tree (an editable install or PYTHONPATH)."""
    return (root / "pyproject.toml").is_file() and (root / "lrsa" / "paths.py").is_file()


def state_dir() -> Path:
    env = os.environ.get("LRSA_STATE_DIR")
    if env:
        return Path(env)
    if is_checkout():
        return PACKAGE_ROOT / ".cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lrsa"


def workspace() -> Path:
    return PACKAGE_ROOT if is_checkout() else state_dir()


def _installed_data_root(start: Path = PACKAGE_ROOT) -> Path | None:
    """``<prefix>/share/lrsa-stream`` of the prefix the package was installed under (a venv,
    ``--user``, ``--prefix``): the package sits at ``<prefix>/lib/pythonX.Y/site-packages``."""
    for parent in (start, *start.parents):
        candidate = parent / DATA_SUBDIR
        if candidate.is_dir():
            return candidate
    return None


def resource(relative: str | Path) -> Path:
    """A shipped file or folder by its path in the source tree (``"samples/posts.jsonl"``).

    Returns the path even when it does not exist, so callers keep their own clear error for a
    missing file; in an installed wheel without the data files it points where they belong."""
    if is_checkout():
        return PACKAGE_ROOT / relative
    root = _installed_data_root()
    return (root if root is not None else PACKAGE_ROOT / DATA_SUBDIR) / relative
