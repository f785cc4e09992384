"""The edge profile as a board runs it: the README's edge command on one core.

`camstream run --model GRAPH.onnx --threads 1 --max-batch 1` (the exported Grad-CAM graph of
EfficientNet-Lite0), each run a fresh process pinned to one core (`os.sched_setaffinity`), on ONNX Runtime and
OpenVINO, at 720p and 480p, to null and to a file. Decoding, inference, rendering and encoding share that one
core, as on a board whose other cores are busy. Figures: fps, p50 / p95 of each stage and end to end, peak RSS.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable

from camstream.bench.clips import derive_clip

SIZES = {"720p": (1280, 720), "480p": (854, 480)}
RUNTIMES = ("onnxruntime", "openvino")
SINKS = ("null", "file")
STAGES = ("decode", "inference", "render", "sink")
# events/s of sysbench 1.0.20 `cpu --threads=1` on a Pi 5: leoncode.co.uk/articles/raspberry-pi-benchmarks
PI5_SYSBENCH_1_THREAD = 2737.49
BOARD_NOTE = (
    "A Raspberry Pi 5 core (Cortex-A76, 2.4 GHz) is slower than this machine's on inference: its two 128-bit "
    "NEON FMA pipes peak at 38 GFLOPS FP32, {simd}. On scalar code the two are about equal (sysbench cpu, 1 "
    "thread: Pi 5 {pi5:,.0f} events/s, leoncode.co.uk/articles/raspberry-pi-benchmarks; here {here}). An "
    "estimate from peak width alone, not a measurement: expect the inference stage on a Pi 5 at up to {factor} "
    "these figures. Measure on the board: `camstream bench --one-core` runs this section alone.")


def simd_width() -> tuple[str, str]:
    """What this CPU's widest FMA is, in words, and the factor it gives over a Pi 5 core's NEON."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "").split()
    except OSError:
        flags = []
    if "avx512f" in flags:
        return "where a core with AVX-512 (as here) has 512-bit FMA units, 4× the width per cycle", "4×"
    if "avx2" in flags and "fma" in flags:
        return "where a core with AVX2 and FMA (as here) has 256-bit FMA units, 2× the width per cycle", "2×"
    return "this core's SIMD width was not read", "a few times"


def first_core() -> int:
    """The lowest-numbered core this process may run on."""
    return min(os.sched_getaffinity(0))


def pinned_run(command: list[str], core: int, timeout: float = 600) -> subprocess.CompletedProcess:
    """`command` in a fresh process allowed onto `core` alone (and its threads with it)."""
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=lambda: os.sched_setaffinity(0, {core}))


def sysbench_here() -> float | None:
    """sysbench's 1-thread CPU figure on this machine (events/s, 5 s), None without sysbench."""
    if not shutil.which("sysbench"):
        return None
    done = subprocess.run(["sysbench", "cpu", "--threads=1", "--time=5", "run"], capture_output=True, text=True,
                          timeout=60)
    for line in done.stdout.splitlines():
        if "events per second" in line:
            return float(line.split(":")[1])
    return None


def bench_one_core(graph: str, source: str, clips_dir: str, frames: int, runtimes: tuple[str, ...] = RUNTIMES,
                   sizes: dict[str, tuple[int, int]] | None = None, sinks: tuple[str, ...] = SINKS,
                   progress: Callable[[str], None] | None = None) -> dict:
    """Each (runtime, size, sink) of the edge command on one core: fps, stage p50/p95, latency, peak RSS."""
    core = first_core()
    results: dict = {"core": core, "graph": os.path.basename(graph), "frames": frames, "runs": {}}
    for label, (width, height) in (sizes or SIZES).items():
        clip = os.path.join(clips_dir, f"edge_{label}_{frames}.mp4")
        derive_clip(source, clip, width, height, fps=30, loops=-(-frames // 221), max_frames=frames)
        for runtime in runtimes:
            for sink in sinks:
                if progress:
                    progress(f"one core: {runtime}, {label} → {sink}")
                out = os.path.join(clips_dir, f"one_core_{runtime}_{label}_{sink}")
                shutil.rmtree(out, ignore_errors=True)
                command = [sys.executable, "-m", "camstream", "run", "--model", graph, "--backend", runtime,
                           "--source", clip, "--threads", "1", "--max-batch", "1", "--sink", sink, "--out", out,
                           "--quiet"]
                done = pinned_run(command, core)
                key = f"{runtime} {label} {sink}"
                if done.returncode != 0:
                    results["runs"][key] = {"error": (done.stderr.strip().splitlines() or ["?"])[-1][:300]}
                    continue
                with open(os.path.join(out, "report.json"), encoding="utf-8") as handle:
                    stream = json.load(handle)["streams"][0]
                results["runs"][key] = {
                    "fps": stream["fps"], "frames_out": stream["frames_out"],
                    "stages": {name: {"p50_ms": stream["stages"][name]["p50_ms"],
                                      "p95_ms": stream["stages"][name]["p95_ms"]} for name in STAGES},
                    "latency_p50_ms": stream["latency_ms"]["p50"], "latency_p95_ms": stream["latency_ms"]["p95"],
                    "rss_peak_mb": stream["rss_peak_process_mb"]}
    here = sysbench_here()
    results["sysbench_here"] = here
    simd, factor = simd_width()
    results["board_note"] = BOARD_NOTE.format(simd=simd, factor=factor, pi5=PI5_SYSBENCH_1_THREAD,
                                              here=f"{here:,.0f} events/s" if here else "sysbench not installed")
    return results


def markdown(results: dict) -> list[str]:
    """The one-core table of bench.md, and the note on boards."""
    lines = [f"Graph {results['graph']}, {results['frames']} frames per run, every process pinned to core "
             f"{results['core']}; stage figures p50 / p95 ms.\n",
             "| runtime | input | sink | fps | decode | inference | render | sink write | end to end | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key, run in results["runs"].items():
        runtime, size, sink = key.split()
        if "error" in run:
            lines.append(f"| {runtime} | {size} | {sink} | failed: {run['error']} | | | | | | |")
            continue
        stages = " | ".join(f"{run['stages'][name]['p50_ms']:.1f} / {run['stages'][name]['p95_ms']:.1f}"
                            for name in STAGES)
        lines.append(f"| {runtime} | {size} | {sink} | {run['fps']:.1f} | {stages} | {run['latency_p50_ms']:.0f} / "
                     f"{run['latency_p95_ms']:.0f} | {run['rss_peak_mb']:.0f} |")
    return [*lines, "", results["board_note"]]
