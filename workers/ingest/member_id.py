"""Who this `lrsa run` driver is within its consumer group: the base of its ingest actors'
transactional ids (exactly-once mode).

Several drivers may share a group (on one machine or many). Each ingest actor's transactional id
must be unique among the live members, or the producers fence each other; and it should be stable
across a restart of the same member, so that the restarted producer's init_transactions aborts its
crashed predecessor's open transaction at once (otherwise read_committed readers wait for the
transaction timeout). Zombie members are fenced by the consumer group generation (KIP-447: the
offsets go with the consumer's group metadata), so the id needs no tie to the partitions.

The id is `<group>-<instance>-ingest-<n>`. `instance` is --instance-id when given (a StatefulSet
pod name, a host name); otherwise `<hostname>-<slot>`, where slot is the lowest number whose lock
file (per group, in the temp dir) no live driver on this host holds: two drivers on one host
differ, and a restarted driver takes its predecessor's slot again. The kernel drops the lock when
the process ends, however it ends.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import IO

MAX_SLOTS = 1024


def lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"lrsa-members-{os.getuid()}"


class MemberId:
    """The instance id of this driver, holding its slot lock (if it took one) while it lives."""

    def __init__(self, group_id: str, instance_id: str | None = None, folder: Path | None = None) -> None:
        self._lock: IO | None = None
        if instance_id:
            self.instance = instance_id
            return
        folder = folder or lock_dir()
        folder.mkdir(parents=True, exist_ok=True)
        host = _safe(socket.gethostname())
        for slot in range(MAX_SLOTS):
            f = open(folder / f"{_safe(group_id)}.{slot}.lock", "a+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                continue
            self._lock, self.instance = f, f"{host}-{slot}"
            return
        raise RuntimeError(f"{MAX_SLOTS} drivers of group {group_id!r} already run on this host")

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file drops the flock
            self._lock = None


def transactional_id(group_id: str, instance: str | None, index: int) -> str:
    """The transactional id of ingest actor `index` of the driver `instance` in `group_id`."""
    return f"{group_id}-{instance}-ingest-{index}" if instance else f"{group_id}-ingest-{index}"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)
