"""Pool bounds an operator set through the control endpoint, kept in a small JSON file
(--control-bounds-file) so that a restarted driver keeps them instead of going back to its flags.

    {"rationale": {"min": 1, "max": 3}}

Written atomically (a temporary file renamed over the old one) on the driver's loop thread after
each accepted resize; read once at start. A file that cannot be read or parsed is reported and
ignored (the flags apply): a broken file never stops the worker.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def load(path: Path | None) -> dict[str, tuple[int, int]]:
    """stage -> (min, max) from the file; {} when there is none or it is unreadable (logged)."""
    if path is None or not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text())
        return {str(stage): (int(b["min"]), int(b["max"])) for stage, b in raw.items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        log.error("pool bounds file %s (--control-bounds-file) unreadable, using the flags' bounds: %s", path, e)
        return {}


def save(path: Path, bounds: dict[str, tuple[int, int]]) -> None:
    """Write every stage's bounds; an OSError is the caller's to report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({stage: {"min": lo, "max": hi} for stage, (lo, hi) in sorted(bounds.items())},
                              indent=1) + "\n")
    os.replace(tmp, path)
