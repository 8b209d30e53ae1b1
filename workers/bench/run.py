"""What the streaming benchmarks (`lrsa bench pipeline|scaling|aggregate`) share: a work folder
with, when asked, a throw-away embedded broker, and how the figures are printed.

The folder (broker data, worker logs, state stores) is deleted when the benchmark succeeds and kept,
with its path logged, when it fails, so a failed run can be read afterwards.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from pydantic_settings import BaseSettings

log = logging.getLogger(__name__)
S = TypeVar("S", bound=BaseSettings)


@contextmanager
def bench_stack(s: S, name: str) -> Iterator[tuple[S, Path]]:
    """(settings, work folder); with `s.embedded` a broker runs in the folder for the duration and
    the settings carry its address in `bootstrap_servers`."""
    from workers.devstack.kafka_stack import KafkaStack

    logging.getLogger("kafka").setLevel(logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix=f"lrsa-bench-{name}-"))
    stack = None
    ok = False
    try:
        if s.embedded:
            stack = KafkaStack(work / "kafka", port=0)
            s = s.model_copy(update={"bootstrap_servers": stack.up()})
        yield s, work
        ok = True
    finally:
        if stack is not None:
            stack.down()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log.error("benchmark %s failed; broker data and logs kept in %s", name, work)


def print_figures(out: dict[str, Any], as_json: bool) -> None:
    """One JSON object, or one `name: value` line per figure."""
    if as_json:
        print(json.dumps(out))
        return
    width = max((len(k) for k in out), default=0)
    for k, v in out.items():
        print(f"{k:>{width}}: {v}")
