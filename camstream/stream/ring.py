"""FrameRing: a fixed set of preallocated frame slots between capture, inference and render.

A slot cycles free → written (capture) → ready → taken (inference) → rendered → released (render) → free.
Policy `live`: when no slot is free the writer takes back the oldest unread frame and counts a drop
(latency beats completeness). Policy `lossless`: the writer waits, so every frame reaches the output.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Protocol

from camstream.stream.records import FrameSlot

POLICIES = ("live", "lossless")


class FrameRing:
    """Bounded hand-off of `FrameSlot`s from one writer to one reader, released by a later stage."""

    def __init__(self, slots: int, policy: str = "lossless", stream: int = 0,
                 condition: threading.Condition | None = None) -> None:
        """`condition`: a lock shared with other rings, so one reader can wait on all of them (`FairReader`)."""
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}")
        if slots < 2:
            raise ValueError("a ring needs at least 2 slots")
        self.policy = policy
        self.stream = stream
        self.slots = [FrameSlot(i, stream) for i in range(slots)]
        self._free: deque[FrameSlot] = deque(self.slots)
        self._ready: deque[FrameSlot] = deque()
        self._cond = condition or threading.Condition()
        self._closed = False
        self._aborted = False
        self.dropped = 0
        self.max_depth = 0

    @property
    def depth(self) -> int:
        """Frames written and not yet taken by the reader."""
        return len(self._ready)

    def acquire(self) -> FrameSlot | None:
        """A slot to write into; None once the ring is aborted. May drop the oldest unread frame (live)."""
        with self._cond:
            while not self._aborted:
                if self._free:
                    return self._free.popleft()
                if self.policy == "live" and self._ready:
                    self.dropped += 1
                    return self._ready.popleft()
                self._cond.wait()
            return None

    def publish(self, slot: FrameSlot) -> None:
        """Hand a written slot to the reader."""
        with self._cond:
            if self._aborted:
                self._free.append(slot)
                return
            self._ready.append(slot)
            self.max_depth = max(self.max_depth, len(self._ready))
            self._cond.notify_all()

    def take(self, max_count: int, max_wait_s: float = 0.0) -> list[FrameSlot]:
        """Up to `max_count` ready slots in order, waiting for the first and up to `max_wait_s` for the rest.

        An empty list means the input has ended (closed and drained) or the ring was aborted.
        """
        with self._cond:
            while not self._ready and not self._closed and not self._aborted:
                self._cond.wait()
            if self._aborted or not self._ready:
                return []
            deadline = time.perf_counter() + max_wait_s
            while len(self._ready) < max_count and not self._closed and not self._aborted:
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or not self._free:
                    break  # with no free slot, waiting only stalls the writer (or makes it drop)
                self._cond.wait(remaining)
            count = min(max_count, len(self._ready))
            return [self._ready.popleft() for _ in range(count)]

    def release(self, slot: FrameSlot) -> None:
        """Return a slot whose frame has been fully consumed."""
        with self._cond:
            slot.explained.clear()
            self._free.append(slot)
            self._cond.notify_all()

    def close(self) -> None:
        """The writer is done: the reader drains what is ready, then gets []."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def abort(self) -> None:
        """Stop now: unread frames are discarded and every waiter wakes."""
        with self._cond:
            self._aborted = True
            self._free.extend(self._ready)
            self._ready.clear()
            self._cond.notify_all()

    @property
    def condition(self) -> threading.Condition:
        """The lock and condition this ring waits on (shared by the rings of one `FairReader`)."""
        return self._cond

    @property
    def rings(self) -> list[FrameRing]:
        """The rings a reader reads (this one), as `FairReader.rings` lists its several."""
        return [self]

    # For `FairReader`, which holds the shared condition while it calls these.

    @property
    def finished(self) -> bool:
        """Nothing more will come: aborted, or closed with nothing left to read."""
        return self._aborted or (self._closed and not self._ready)

    @property
    def can_grow(self) -> bool:
        """More frames may arrive without the reader taking any: open, with a free slot."""
        return not self._closed and not self._aborted and bool(self._free)

    def pop_ready(self) -> FrameSlot:
        """The oldest ready slot (the caller holds the condition and checked `depth`)."""
        return self._ready.popleft()


class FairReader:
    """One reader over the rings of several streams that share one condition: batches are filled round-robin,
    starting after the stream served last, so a stream with frames ready waits at most
    ceil(streams / batch) − 1 batches, however fast the others are."""

    def __init__(self, rings: list[FrameRing]) -> None:
        if len({id(ring.condition) for ring in rings}) != 1:
            raise ValueError("the rings of a FairReader must share one condition")
        if [ring.stream for ring in rings] != list(range(len(rings))):
            raise ValueError("ring i of a FairReader must carry stream number i")
        self.rings = rings
        self._cond = rings[0].condition
        self._next = 0
        self._skipped = [0] * len(rings)
        self.max_skipped = [0] * len(rings)  # most consecutive batches a ready stream was left out of
        self.taken = [0] * len(rings)

    def take(self, max_count: int, max_wait_s: float = 0.0) -> list[FrameSlot]:
        """Like `FrameRing.take`, across all rings: [] once every ring has finished."""
        with self._cond:
            while not any(r.depth for r in self.rings) and not all(r.finished for r in self.rings):
                self._cond.wait()
            if not any(r.depth for r in self.rings):
                return []
            deadline = time.perf_counter() + max_wait_s
            while sum(r.depth for r in self.rings) < max_count and any(r.can_grow for r in self.rings):
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            waiting = [r.depth > 0 for r in self.rings]
            batch: list[FrameSlot] = []
            count = len(self.rings)
            stream = self._next
            while len(batch) < max_count and any(r.depth for r in self.rings):
                ring = self.rings[stream]
                if ring.depth:
                    batch.append(ring.pop_ready())
                    self._next = (stream + 1) % count
                stream = (stream + 1) % count
            served = {slot.stream for slot in batch}
            for index, ring in enumerate(self.rings):
                if waiting[index] and ring.stream not in served:
                    self._skipped[index] += 1
                    self.max_skipped[index] = max(self.max_skipped[index], self._skipped[index])
                else:
                    self._skipped[index] = 0
            for slot in batch:
                self.taken[slot.stream] += 1
            return batch


class FrameReader(Protocol):
    """What inference reads from: one stream's `FrameRing` or a `FairReader` over several."""

    @property
    def rings(self) -> list[FrameRing]:
        """The rings read, stream i at index i."""
        ...

    def take(self, max_count: int, max_wait_s: float = 0.0) -> list[FrameSlot]:
        """Up to `max_count` ready slots; [] once the input has ended or was aborted."""
        ...
