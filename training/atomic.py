"""Files replaced whole: readers, concurrent runs and a resumed run see the old file or the new
one, never half of one (a run can be killed mid-write)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replaced_whole(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; once the block succeeds it replaces `path`
    in one step. A failed block leaves `path` as it was and removes the partial file."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
