"""FrameRing policies, with real decoded frames where a source is involved."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from camstream.stream.capture import CaptureStage, PyAVSource
from camstream.stream.ring import FairReader, FrameRing
from camstream.stream.telemetry import Telemetry


def write(ring: FrameRing, seq: int) -> None:
    slot = ring.acquire()
    assert slot is not None
    slot.shape_to((2, 2, 3), (1, 1, 3))
    slot.meta.seq = seq
    ring.publish(slot)


def test_ring_drops_oldest_unread_when_full_in_live_mode():
    ring = FrameRing(4, "live")
    for seq in range(10):
        write(ring, seq)  # never blocks
    assert ring.dropped == 6
    assert [slot.meta.seq for slot in ring.take(10)] == [6, 7, 8, 9]


def test_ring_writer_waits_in_lossless_mode_and_nothing_is_lost():
    ring = FrameRing(3, "lossless")
    seen: list[int] = []

    def reader():
        while batch := ring.take(2, 0.01):
            for slot in batch:
                seen.append(slot.meta.seq)
                ring.release(slot)

    thread = threading.Thread(target=reader)
    thread.start()
    for seq in range(200):
        write(ring, seq)
    ring.close()
    thread.join(5)
    assert not thread.is_alive()
    assert seen == list(range(200))
    assert ring.dropped == 0


def test_take_batches_up_to_max_and_returns_empty_after_close():
    ring = FrameRing(8, "lossless")
    for seq in range(5):
        write(ring, seq)
    assert [s.meta.seq for s in ring.take(3)] == [0, 1, 2]
    ring.close()
    assert [s.meta.seq for s in ring.take(3)] == [3, 4]
    assert ring.take(3) == []


def test_abort_wakes_a_blocked_writer():
    ring = FrameRing(2, "lossless")
    write(ring, 0)
    write(ring, 1)
    result: list = []
    thread = threading.Thread(target=lambda: result.append(ring.acquire()))
    thread.start()
    ring.abort()
    thread.join(2)
    assert not thread.is_alive() and result == [None]


def test_live_policy_with_slow_consumer_keeps_memory_bounded_and_counts_drops(dashcam_clip):
    """Real decoding into a live ring read by a consumer 10× slower than the decoder."""
    telemetry = Telemetry()
    ring = FrameRing(6, "live")
    source = PyAVSource(str(dashcam_clip), (224, 224))
    capture = CaptureStage(source, ring, telemetry)
    consumed: list[int] = []
    rss_samples: list[float] = []
    capture.start()
    while batch := ring.take(2, 0.0):
        for slot in batch:
            consumed.append(slot.meta.seq)
            time.sleep(0.02)  # the slow consumer under test, not a wait for a condition
            ring.release(slot)
        rss_samples.append(telemetry.rss_mb())
    capture.join(5)
    source.close()
    assert telemetry.frames_in == 221
    assert ring.dropped > 0
    assert len(consumed) + ring.dropped == telemetry.frames_in  # every frame is either consumed or counted
    assert consumed == sorted(consumed)  # order is kept
    assert len(ring.slots) == 6 and ring.max_depth <= 6
    buffers = {id(slot.image) for slot in ring.slots}
    assert len(buffers) == 6  # slots were written in place, never replaced
    assert max(rss_samples) - rss_samples[0] < 50  # MB: bounded by the fixed slots, not by the input length
    assert all(slot.image.shape == (540, 960, 3) for slot in ring.slots)


def test_lossless_capture_delivers_every_frame_in_order(dashcam_clip):
    telemetry = Telemetry()
    ring = FrameRing(4, "lossless")
    source = PyAVSource(str(dashcam_clip), (224, 224))
    capture = CaptureStage(source, ring, telemetry)
    capture.start()
    seqs, stamps = [], []
    while batch := ring.take(3, 0.0):
        for slot in batch:
            seqs.append(slot.meta.seq)
            stamps.append(slot.meta.time_s)
            assert slot.model_input.shape == (224, 224, 3)
            ring.release(slot)
    capture.join(5)
    source.close()
    assert seqs == list(range(221))
    assert np.all(np.diff(stamps) > 0)
    assert stamps[1] - stamps[0] == pytest.approx(1 / 25)
    assert ring.dropped == 0 and capture.error is None


def shared_rings(count: int, slots: int = 8) -> list[FrameRing]:
    condition = threading.Condition()
    return [FrameRing(slots, "lossless", stream, condition) for stream in range(count)]


def test_fair_reader_fills_batches_round_robin_and_never_starves_a_slow_stream():
    rings = shared_rings(3)
    for seq in range(6):
        write(rings[0], seq)  # a fast stream with a backlog
    write(rings[2], 0)  # a slow one with a single frame
    reader = FairReader(rings)
    first = reader.take(2)
    assert [(s.stream, s.meta.seq) for s in first] == [(0, 0), (2, 0)]  # the slow stream is in the first batch
    write(rings[1], 0)
    second = reader.take(2)
    assert [(s.stream, s.meta.seq) for s in second] == [(0, 1), (1, 0)]  # after stream 2 came stream 0, then 1
    assert reader.max_skipped == [0, 0, 0]
    rest = reader.take(8)
    assert [(s.stream, s.meta.seq) for s in rest] == [(0, 2), (0, 3), (0, 4), (0, 5)]  # order kept in a stream
    assert reader.taken == [6, 1, 1]


def test_fair_reader_bounds_waiting_by_streams_over_batch():
    rings = shared_rings(5, slots=40)
    for ring in rings:
        for seq in range(20):
            write(ring, seq)
    reader = FairReader(rings)
    for _ in range(40):
        assert len(reader.take(2)) == 2
    assert max(reader.max_skipped) == 2  # ceil(5 / 2) − 1: nobody waits longer
    assert reader.taken == [16, 16, 16, 16, 16]


def test_fair_reader_ends_once_every_ring_has_finished_and_needs_shared_rings():
    rings = shared_rings(2)
    write(rings[1], 0)
    rings[0].close()
    rings[1].close()
    reader = FairReader(rings)
    assert [s.stream for s in reader.take(4)] == [1]
    assert reader.take(4) == []
    with pytest.raises(ValueError, match="share one condition"):
        FairReader([FrameRing(2, "lossless", 0), FrameRing(2, "lossless", 1)])


def test_fair_reader_wakes_when_another_thread_publishes():
    rings = shared_rings(2)
    reader = FairReader(rings)
    got: list = []
    taker = threading.Thread(target=lambda: got.extend(reader.take(1)))
    taker.start()
    write(rings[1], 7)
    taker.join(5)
    assert not taker.is_alive() and [(s.stream, s.meta.seq) for s in got] == [(1, 7)]
