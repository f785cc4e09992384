"""`camstream fleet`: many streams over a Ray cluster, one actor per group of streams, each running the same
pipeline as `camstream run`; the driver gathers every stream's report into a fleet summary.

Without an address a local Ray instance is started (and stopped at the end). A stream whose source cannot
be opened or fails reports its error; the other actors go on. Ctrl-C asks every actor to stop in order, so
each writes what it has rendered so far, and the fleet report is still written.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from camstream.errors import CamstreamError
from camstream.redaction import redact
from camstream.storage import write_json_atomic
from camstream.stream.config import PipelineConfig
from camstream.stream.pipeline import Pipeline
from camstream.stream.streams import stream_folder_name

STOP_GRACE_S = 60.0  # after Ctrl-C, how long the driver waits for the actors' final reports


@dataclass
class FleetConfig:
    """The streams, how they are grouped onto actors, and the pipeline each actor runs."""

    sources: tuple[str, ...]
    out_dir: str = "fleet-out"
    address: str | None = None  # None: start a local Ray instance; "auto" or "ray://host:port": join one
    streams_per_actor: int = 1
    cpus_per_actor: float = 1.0
    pipeline: PipelineConfig = field(default_factory=lambda: PipelineConfig(sinks=("file",)))

    def groups(self) -> list[list[tuple[int, str]]]:
        """(stream number, source) lists, one per actor, in order."""
        numbered = list(enumerate(self.sources))
        size = max(1, self.streams_per_actor)
        return [numbered[start:start + size] for start in range(0, len(numbered), size)]


class StreamGroupWorker:
    """Runs one pipeline over a group of streams inside a Ray actor (made remote by `run_fleet`)."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.pipeline: Pipeline | None = None
        self.stop_requested = False

    def run(self) -> dict:
        """The pipeline's report; an error that stops the group before it starts is reported, not raised."""
        try:
            self.pipeline = Pipeline(self.config)
        except CamstreamError as exc:
            return {"error": str(exc), "build_failed": True}
        if self.stop_requested:
            self.pipeline.interrupt()
        report = self.pipeline.run()
        error = self.pipeline.error()
        report["error"] = None if error is None else str(error)
        return report

    def stop(self) -> bool:
        """Ask the running pipeline to stop in order (called while `run` is in progress)."""
        self.stop_requested = True
        if self.pipeline is not None:
            self.pipeline.interrupt()
        return True


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise CamstreamError("camstream fleet needs Ray: pip install 'camstream[fleet]'") from exc
    return ray


def _stream_entries(group: list[tuple[int, str]], actor: int, out_dir: str, report: dict) -> list[dict]:
    """One summary line per stream of an actor's report (or its error)."""
    if report.get("build_failed") or "streams" not in report:
        return [{"stream": number, "source": redact(source), "actor": actor,
                 "error": redact(str(report.get("error", "no report"))),
                 "frames_in": 0, "frames_out": 0, "dropped": 0, "fps": 0.0, "latency_p95_ms": None,
                 "out_dir": out_dir} for number, source in group]
    reports = report["streams"]
    entries = []
    for (number, source), stream in zip(group, reports, strict=False):  # a report cut short lists fewer
        entries.append({"stream": number, "source": redact(source), "actor": actor,
                        "error": stream["error"] or (report.get("error") if len(reports) == 1 else None),
                        "frames_in": stream["frames_in"], "frames_out": stream["frames_out"],
                        "dropped": stream["dropped"], "fps": stream["fps"],
                        "latency_p95_ms": stream["latency_ms"]["p95"],
                        "out_dir": stream["out_dir"]})
    return entries


def _start_ray(ray, address: str | None) -> bool:
    """Join the Ray at `address` (None: start a local one unless one runs); True when started here."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError … for a bad address
        raise CamstreamError(f"cannot start or reach Ray ({address or 'local'}): "
                             f"{str(exc).splitlines()[0]}") from exc
    return address is None


def _launch(ray, config: FleetConfig, groups: list[list[tuple[int, str]]]) -> tuple[list, dict, list[str]]:
    """One actor per stream group, each running its pipeline: (actors, pending run → group index, folders)."""
    remote_worker = ray.remote(StreamGroupWorker)
    actors, pending, folders = [], {}, []
    for index, group in enumerate(groups):
        if len(group) == 1:
            folder = os.path.join(config.out_dir, stream_folder_name(*group[0]))
            pipeline = replace(config.pipeline, source=group[0][1], sources=(), out_dir=folder)
        else:
            folder = os.path.join(config.out_dir, f"actor-{index}")
            pipeline = replace(config.pipeline, sources=tuple(s for _, s in group), out_dir=folder)
        actor = remote_worker.options(num_cpus=config.cpus_per_actor, max_concurrency=2).remote(pipeline)
        actors.append(actor)
        folders.append(folder)
        pending[actor.run.remote()] = index
    return actors, pending, folders


def _collect(ray, actors: list, pending: dict, progress: Callable[[str], None]) -> tuple[dict[int, dict], bool]:
    """Each actor's report as it finishes; a first Ctrl-C stops every actor in order (they get
    `STOP_GRACE_S` to report), a second abandons them. Returns (reports by group, interrupted)."""
    reports: dict[int, dict] = {}
    deadline: float | None = None
    while pending:
        try:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in done:
                index = pending.pop(ref)
                try:
                    reports[index] = ray.get(ref)
                except Exception as exc:  # the actor died (RayActorError) or raised
                    reports[index] = {"error": f"actor failed: {str(exc).splitlines()[0]}", "build_failed": True}
                ray.kill(actors[index])  # a finished actor still holds its CPUs: free them for queued ones
                progress(f"fleet: actor {index} done ({len(reports)}/{len(actors)})")
            if deadline is not None and time.perf_counter() > deadline:
                for index in pending.values():
                    reports[index] = {"error": "no report within the stop grace period", "build_failed": True}
                break
        except KeyboardInterrupt:
            if deadline is not None:
                raise
            progress("fleet: stopping every actor (Ctrl-C again to abandon)")
            for actor in actors:
                actor.stop.remote()
            deadline = time.perf_counter() + STOP_GRACE_S
    return reports, deadline is not None


def _summary(streams: list[dict], actors: int, elapsed: float, interrupted: bool) -> dict:
    latencies = [s["latency_p95_ms"] for s in streams if s["latency_p95_ms"] is not None]
    return {"streams": len(streams), "actors": actors,
            "total_fps": round(sum(s["fps"] for s in streams), 3),
            "frames_out": sum(s["frames_out"] for s in streams), "dropped": sum(s["dropped"] for s in streams),
            "latency_p95_ms_max": max(latencies) if latencies else None,
            "failed_streams": [s["stream"] for s in streams if s["error"]],
            "elapsed_s": round(elapsed, 3), "interrupted": interrupted}


def run_fleet(config: FleetConfig, progress: Callable[[str], None] = print) -> dict:
    """Run every stream on Ray actors and return the fleet report (also written to OUT/fleet.json)."""
    if not config.sources:
        raise CamstreamError("a fleet needs at least one source")
    ray = _import_ray()
    started_here = _start_ray(ray, config.address)
    began = time.perf_counter()
    os.makedirs(config.out_dir, exist_ok=True)
    groups = config.groups()
    try:
        actors, pending, folders = _launch(ray, config, groups)
        progress(f"fleet: {len(config.sources)} streams on {len(actors)} actors")
        reports, interrupted = _collect(ray, actors, pending, progress)
    finally:
        if started_here:
            ray.shutdown()
    streams = [entry for index, group in enumerate(groups)
               for entry in _stream_entries(group, index, folders[index], reports.get(index, {}))]
    summary = _summary(streams, len(actors), time.perf_counter() - began, interrupted)
    fleet = {"address": config.address or "local", "summary": summary, "streams": streams,
             "reports": {str(index): report for index, report in reports.items()}}
    write_json_atomic(os.path.join(config.out_dir, "fleet.json"), fleet)
    return fleet
