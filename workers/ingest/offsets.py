"""Per-partition offset tracking for at-least-once commits.

Offsets are registered in consumption order and marked done, in any order, once their output
(result or dead letter) is acknowledged by the broker. The committable position of a partition is
the highest *contiguous* done offset + 1: nothing behind a commit is ever still in flight.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable


class PartitionOffsets:
    """Consumed offsets of one partition, oldest first, with their done flags."""

    def __init__(self) -> None:
        self._order: deque[int] = deque()
        self._done: dict[int, bool] = {}
        self.committable: int | None = None  # next offset to read after a restart
        self.first: int | None = None        # the first offset seen

    def add(self, offset: int) -> None:
        if offset in self._done:
            return  # re-fetched after a seek: still the same unit of work
        self._order.append(offset)
        self._done[offset] = False
        if self.first is None:
            self.first = offset

    def done(self, offset: int) -> None:
        if offset in self._done:
            self._done[offset] = True
        while self._order and self._done[self._order[0]]:
            del self._done[self._order[0]]
            self.committable = self._order.popleft() + 1

    @property
    def pending(self) -> int:
        return len(self._order)


class OffsetTracker:
    """OffsetTracker over many partitions; commits only move forward."""

    def __init__(self) -> None:
        self._parts: dict[Hashable, PartitionOffsets] = {}
        self._committed: dict[Hashable, int] = {}

    def add(self, tp: Hashable, offset: int) -> None:
        self._parts.setdefault(tp, PartitionOffsets()).add(offset)

    def done(self, tp: Hashable, offset: int) -> None:
        part = self._parts.get(tp)
        if part is not None:  # None: the partition was revoked meanwhile
            part.done(offset)

    def to_commit(self) -> dict[Hashable, int]:
        """Partitions whose committable position moved since the last `committed()`."""
        out = {}
        for tp, part in self._parts.items():
            if part.committable is not None and part.committable > self._committed.get(tp, -1):
                out[tp] = part.committable
        return out

    def committed(self, offsets: dict[Hashable, int]) -> None:
        for tp, off in offsets.items():
            self._committed[tp] = max(off, self._committed.get(tp, -1))

    def last_committed(self, tp: Hashable, default: int) -> int:
        return self._committed.get(tp, default)

    def restart_points(self, tps) -> dict[Hashable, int]:
        """Where to read these partitions again if their uncommitted work is dropped (or, in a
        transaction, aborted): the last commit, else the first offset seen. Partitions committed
        up to their last record are left out."""
        out = {}
        for tp in tps:
            part = self._parts.get(tp)
            if part is None or part.first is None:
                continue
            committed = self._committed.get(tp)
            if part.pending or (part.committable or 0) > (committed if committed is not None else -1):
                out[tp] = committed if committed is not None else part.first
        return out

    def revoke(self, tps) -> None:
        """Forget partitions handed to another group member; their uncommitted work is redone there."""
        for tp in tps:
            self._parts.pop(tp, None)
            self._committed.pop(tp, None)

    @property
    def pending(self) -> int:
        return sum(p.pending for p in self._parts.values())
