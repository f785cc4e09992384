"""report.json: one shape whatever the stream count — `streams` (one entry per stream, in order), `total`, and
the settings and system the run shared. Readers (the CLI summary, fleet, bench) read this one shape."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from camstream.backends import Backend
from camstream.redaction import redact
from camstream.runtime import run_start_time
from camstream.stream.config import PipelineConfig
from camstream.stream.streams import Stream

if TYPE_CHECKING:
    from camstream.stream.timeline import ClipTracker


@dataclass
class RunFacts:
    """What the run as a whole reports beside its streams (the pipeline fills it in at the end)."""

    config: PipelineConfig
    backend: Backend
    method: str
    clip_tracker: ClipTracker | None
    interrupted: bool
    error: str | None
    batches: int
    max_batches_skipped: list[int]  # per stream: most consecutive batches it was left out of with a frame ready
    kernels_ready_at: float | None  # time.time() when the Numba kernels took over from their NumPy twins


def stream_report(stream: Stream, stuck: list[str], sink_errors: list[str]) -> dict:
    """One stream's entry: its source, sinks, telemetry, drops, order checks and errors."""
    info, error = stream.source.info, stream.capture.error or stream.render.error
    return {
        "source": {"name": info.name, "width": info.width, "height": info.height, "fps": info.fps,
                   "frames": info.frames, "live": info.live},
        "out_dir": stream.out_dir,
        "policy": stream.policy,
        "sinks": [sink.describe() for sink in stream.sinks],
        **stream.telemetry.report(),
        # from the source itself: a capture still reconnecting when the run ends has not copied its latest figures
        "reconnects": stream.source.reconnects,
        "outage_s": round(stream.source.outage_s, 3),
        "dropped": stream.ring.dropped,
        "input": stream.source.input_facts(),
        "top_classes": stream.render.top_classes(),
        "queue_max_depth": stream.ring.max_depth,
        "out_of_order": stream.render.out_of_order,
        "sequence_gaps": stream.render.seq_gaps,
        "error": None if error is None else redact(str(error)),
        "sink_errors": sink_errors,
        "stuck_threads": stuck,
    }


def run_report(facts: RunFacts, stream_reports: list[dict]) -> dict:
    """The whole run's report from its facts and its streams' entries (`stream_report`)."""
    config, tracker = facts.config, facts.clip_tracker
    for report, skipped in zip(stream_reports, facts.max_batches_skipped, strict=True):
        report["max_batches_skipped_while_ready"] = skipped
    elapsed = max(r["elapsed_s"] for r in stream_reports)
    frames_out = sum(r["frames_out"] for r in stream_reports)
    batches = facts.batches
    total = {"streams": len(stream_reports), "frames_in": sum(r["frames_in"] for r in stream_reports),
             "frames_out": frames_out, "dropped": sum(r["dropped"] for r in stream_reports),
             "elapsed_s": elapsed, "fps": round(frames_out / elapsed, 3) if elapsed else 0.0,
             "batches": batches,
             "mean_batch": round(sum(r["frames_explained"] for r in stream_reports) / max(batches, 1), 3),
             "failed_streams": [i for i, r in enumerate(stream_reports) if r["error"]],
             "latency_p95_ms_max": max(r["latency_ms"]["p95"] for r in stream_reports),
             "rss_peak_mb": max(r["rss_peak_mb"] for r in stream_reports)}
    return {
        "model": facts.backend.model_name, "layer": facts.backend.layer, "method": facts.method,
        "model_input": {"size": list(facts.backend.input_size), "resize": facts.backend.resize,
                        "classes_named": len(facts.backend.labels)},
        "backend": facts.backend.describe(), "frozen": facts.backend.frozen,
        "threshold": str(config.threshold), "max_batch": config.max_batch,
        "smooth": config.smooth, "reuse_cam": config.reuse_cam,
        "clip": None if tracker is None else {
            "model": os.path.basename(config.clip_model or ""), "steps": config.clip_steps,
            "method": config.clip_method, "windows_explained": tracker.explained,
            "latest": {str(stream): {"class_id": int(r.class_ids[0]), "score": round(float(r.scores[0]), 6),
                                     "importance": [round(float(v), 6) for v in r.maps[0]]}
                       for stream, r in sorted(tracker.latest.items())}},
        "interrupted": facts.interrupted,
        "error": facts.error,
        # process start → the kernels taking over (frames before were drawn by their NumPy twins, same values)
        "kernels_ready_s": None if facts.kernels_ready_at is None
        else round(facts.kernels_ready_at - run_start_time(), 2),
        "system": system(),
        "streams": stream_reports,
        "total": total,
    }


def system() -> dict:
    """The machine and the libraries the run used; torch is named only when this run loaded it."""
    torch = sys.modules.get("torch")
    return {"python": platform.python_version(), "torch": getattr(torch, "__version__", None),
            "torch_threads": torch.get_num_threads() if torch is not None else None,
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "platform": sys.platform}
