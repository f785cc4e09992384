"""bench's own arithmetic and report: ratios to plain inference, and every section of bench.md."""

from __future__ import annotations

import numpy as np
import pytest

from camstream.bench.explainers import summarise
from camstream.bench.suite import markdown


def test_summary_gives_each_method_its_ratio_to_plain_eager_and_frozen():
    per_frame = {"plain": 10.0, "gradcam": 10.5, "recipro": 40.0, "plain_frozen": 8.0, "gradcam_frozen": 8.4,
                 "torchcam": 13.0}
    summary = summarise(per_frame, ("gradcam", "recipro", "cam"), missing=["captum"])
    assert summary["methods"]["gradcam"] == {"ms": 10.5, "ratio_to_plain": 1.05}
    assert summary["methods"]["recipro"]["ratio_to_plain"] == 4.0
    assert "cam" not in summary["methods"]  # not timed (e.g. a head that is not GAP + linear)
    assert summary["frozen"]["methods"]["gradcam"] == {"ms": 8.4, "ratio_to_plain": 1.05, "ratio_to_eager_plain": 0.84}
    assert summary["peers"]["torchcam"]["speedup_vs_peer"] == pytest.approx(13.0 / 10.5, abs=1e-3)
    assert summary["missing_peers"] == ["captum"]


def test_summary_without_a_frozen_model_says_so():
    assert summarise({"plain": 5.0, "gradcam": 5.0}, ("gradcam",), [])["frozen"] is None


def test_bench_markdown_has_every_section_and_the_figures():
    timed = {"ms": 1.25, "ratio_to_plain": 1.04}
    results = {
        "system": {"cpu": "x86_64", "cores": 2, "torch": "2.14", "torch_threads": 2, "python": "3.11"}, "elapsed_s": 3,
        "explainers": [{"model": "efficientnet_lite0", "batch": 4, "plain_ms": 1.2, "methods": {"gradcam": timed},
                        "peers": {}, "frozen": {"plain_ms": 1.0, "methods": {"gradcam": timed}}}],
        "pipeline": {"720p_null": {"clip": "1280x720", "fps": 31.5, "inference_ceiling_fps": 40.0,
                                   "fraction_of_ceiling": 0.79,
                                   "stages": {s: {"p50_ms": 2.0} for s in ("decode", "inference", "cam", "render",
                                                                          "sink")},
                                   "latency_p95_ms": 120.0, "rss_peak_mb": 950.0}},
        "streams": None,
        "kernels": {"overlay": {"720p": {"fused_ms": 1.3, "opencv_chain_ms": 2.8, "speedup": 2.15}},
                    "percentile": {"64x64": {"selection_us": 5.0, "np_percentile_us": 30.0, "speedup": 6.0}}},
        "edge": [{"input": [224, 224], "plain_ms": 14.0, "methods": {"gradcam": {"ms": 14.5, "ratio_to_plain": 1.04}}}],
        "extensions": None, "malloc": {"untuned_ms": 20.0, "tuned_ms": 11.0, "speedup": 1.82},
        "targets": [{"target": "gradcam ≤ 1.05× plain", "value": 1.04, "met": True}],
        "startup": {"help_s": {"min": 0.14, "median": 0.15, "max": 0.2, "runs": 2},
                    "torch": {"cold_s": {"min": 15.5, "median": 15.8, "max": 16.1, "runs": 2},
                              "warm_s": {"min": 9.1, "median": 10.0, "max": 11.3, "runs": 2}}},
    }
    text = markdown(results)
    assert "## Start-up" in text and "| first frame, torch, cache warm | 9.1 s | 10.0 s | 11.3 s |" in text
    for heading in ("# camstream bench", "## Explainers", "## Pipeline", "## Kernels", "## Edge profile",
                    "## Allocator tuning", "## Targets"):
        assert heading in text
    assert "## Several streams" not in text  # no streams were measured
    assert "| efficientnet_lite0 | 4 | 1.20 | n/a | 1.25 (1.04×) |" in text
    assert "| 720p_null (1280x720) | 31.5 | 40.0 | 0.79 |" in text
    assert "| gradcam ≤ 1.05× plain | 1.04 | yes |" in text


def test_the_openvino_xai_peer_is_run_in_its_own_environment_or_its_absence_said(tmp_path, monkeypatch):
    import sys

    from camstream.bench.backends import markdown as backends_markdown
    from camstream.bench.backends import openvino_xai_peer

    monkeypatch.delenv("CAMSTREAM_XAI_PYTHON", raising=False)
    frames = lambda: [np.zeros((4, 4, 3), np.uint8)]  # noqa: E731
    plain = str(tmp_path / "plain.onnx")
    assert "CAMSTREAM_XAI_PYTHON" in openvino_xai_peer(plain, {}, frames, rounds=1)["skipped"]
    # this environment has no openvino-xai: the peer script says so in its one line, and the bench reports it
    without = openvino_xai_peer(plain, {}, frames, rounds=1, python=sys.executable)
    assert "openvino_xai" in without["skipped"]
    assert f"Peer openvino-xai: not measured ({without['skipped']})" in "\n".join(
        backends_markdown({"model": "m", "settings": [], "peer": without}))
    measured = {"openvino": "2024.4.0-16579", "threads": 1, "batch": 1, "contenders": {
        "plain": {"median_ms": 16.0, "min_ms": 15.0, "max_ms": 17.0, "vs_plain": 1.0},
        "openvino-xai recipro": {"median_ms": 24.0, "min_ms": 23.0, "max_ms": 25.0, "vs_plain": 1.5}}}
    text = "\n".join(backends_markdown({"model": "m", "settings": [], "peer": measured}))
    assert "OpenVINO 2024.4.0 (its own pin)" in text
    assert "| openvino-xai recipro | 24.00 (23.00–25.00) | 1.50× |" in text


def test_a_run_on_a_busy_machine_or_with_impossible_figures_is_flagged_not_trusted():
    """Issue 19: bench printed "fraction of ceiling 4.95" and Grad-CAM at 0.72× plain without a word."""
    from camstream.bench.trust import verdict

    quiet = {"system": {"cores": 2, "load_before": 0.3, "load_after": 0.6},
             "explainers": [{"model": "m", "batch": 4,
                             "methods": {"gradcam": {"ms": 10.3, "ratio_to_plain": 1.03}}}],
             "pipeline": {"720p_null": {"fraction_of_ceiling": 0.93}},
             "backends": {"settings": [{"threads": 1, "batch": 1, "ms_per_frame": {
                 "openvino plain": {"ratio_to_own_plain": 1.0}, "openvino gradcam": {"ratio_to_own_plain": 1.02}}}]}}
    assert verdict(quiet) == {"valid": True, "warnings": []}
    busy = {**quiet, "system": {"cores": 2, "load_before": 1.8, "load_after": 0.4}}
    assert verdict(busy)["valid"] is False and "load average 1.80 on 2 cores" in verdict(busy)["warnings"][0]
    impossible = {**quiet,
                  "explainers": [{"model": "m", "batch": 4,
                                  "methods": {"gradcam": {"ms": 7.2, "ratio_to_plain": 0.72}}}],
                  "pipeline": {"720p_null": {"fraction_of_ceiling": 4.95}},
                  "backends": {"settings": [{"threads": 2, "batch": 8, "ms_per_frame": {
                      "openvino plain": {"ratio_to_own_plain": 1.0},
                      "openvino gradcam": {"ratio_to_own_plain": 0.74}}}]}}
    found = verdict(impossible)
    assert found["valid"] is False and len(found["warnings"]) == 3
    assert any("0.72×" in w for w in found["warnings"]) and any("4.95" in w for w in found["warnings"])
    from camstream.bench.trust import markdown as trust_markdown

    text = "\n".join(trust_markdown(found))
    assert "not trustworthy" in text and "0.74×" in text


def test_startup_is_measured_in_fresh_processes():
    from camstream.bench.startup import bench_startup

    figures = bench_startup(rounds=2, backends=(), progress=lambda _line: None)
    help_s = figures["help_s"]
    assert help_s["runs"] == 2 and 0 < help_s["min"] <= help_s["median"] <= help_s["max"]


def test_explainer_race_runs_with_peers_on_copies_made_before_hooking(demo_clip):
    """Issue 28: `camstream bench --quick` died with "cannot pickle 'generator' object": the frozen and peer copies
    were deep-copied from a model camstream had already hooked (the hook holds its mode-restoring context)."""
    from camstream.bench.explainers import bench_explainers

    found = bench_explainers("mobilenet_v2", 1, str(demo_clip), rounds=1, input_side=64, methods=("gradcam",))
    assert found["plain_ms"] > 0 and "gradcam" in found["methods"]
    assert set(found["peers"]) | set(found["missing_peers"]) == {"pytorch-grad-cam", "captum", "torchcam"}


def test_the_one_core_profile_pins_each_run_to_one_core_and_reads_its_report(tmp_path, demo_clip):
    """The edge command, run as the bench runs it: a fresh process allowed onto one core, its report read back."""
    import sys

    pytest.importorskip("onnxruntime", reason="the onnx extra (in the test extra) provides ONNX Runtime")
    from camstream.backends.export import export_model
    from camstream.bench.one_core import bench_one_core, first_core, markdown, pinned_run

    core = first_core()
    seen = pinned_run([sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"], core)
    assert seen.stdout.strip() == f"[{core}]"
    graph = export_model(str(tmp_path / "lite0-gradcam.onnx"))["out"]
    figures = bench_one_core(graph, str(demo_clip), str(tmp_path), frames=12, runtimes=("onnxruntime",),
                             sizes={"480p": (854, 480)}, sinks=("null", "file"))
    assert set(figures["runs"]) == {"onnxruntime 480p null", "onnxruntime 480p file"}
    for run in figures["runs"].values():
        assert run["frames_out"] == 12 and run["fps"] > 0 and run["rss_peak_mb"] > 0
        assert run["stages"]["inference"]["p50_ms"] > 0
    assert figures["runs"]["onnxruntime 480p file"]["stages"]["sink"]["p50_ms"] > 0
    text = "\n".join(markdown(figures))
    assert "| onnxruntime | 480p | file |" in text and "Raspberry Pi 5" in text and "leoncode.co.uk" in text


def test_the_process_start_time_is_the_real_one_not_rounded_to_the_boot_second():
    """time_to_first_frame_s counts from the process's start. psutil's create_time adds the start's clock ticks to
    the boot time of /proc/stat, which is whole seconds: here it put the start 0.78 s before the real one, and the
    first frame that much later."""
    import subprocess
    import sys
    import time

    child = "from camstream.runtime import process_start_time; print(repr(process_start_time()))"
    for _ in range(3):
        launched = time.time()
        started = float(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                                       check=True).stdout)
        assert -0.03 <= started - launched <= 0.25, started - launched  # clock ticks of 10 ms, and exec's own time


def test_a_section_that_fails_loses_no_other_section_and_start_up_skips_a_missing_onnx_runtime(tmp_path,
                                                                                                monkeypatch):
    """A bench with only the torch extra (the README's first command) died in its start-up section after 5 min,
    writing nothing: it ran `camstream run --backend onnxruntime` with no ONNX Runtime installed."""
    import importlib.util
    import json

    from camstream.bench import suite

    def failing(name):
        def measure(*_args, **_kwargs):
            raise RuntimeError(f"{name} broke")
        return measure

    for name in ("bench_explainers", "bench_kernels", "bench_pipeline", "bench_streams", "_bench_backends_if_installed",
                 "bench_one_core_if_installed", "bench_extensions", "_bench_detectors_if_installed", "bench_faithful",
                 "compare_malloc"):
        monkeypatch.setattr(suite, name, failing(name))
    startup_backends = []

    def startup(rounds, backends, progress):
        startup_backends.append(backends)
        return {"help_s": {"min": 0.1, "median": 0.1, "max": 0.1, "runs": 1},
                "torch": {"cold_s": {"min": 7.0, "median": 7.0, "max": 7.0, "runs": 1},
                          "warm_s": {"min": 2.3, "median": 2.3, "max": 2.3, "runs": 1}}}

    monkeypatch.setattr(suite, "bench_startup", startup)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "onnxruntime"
                        else find_spec(name, *rest))
    said = []
    results = suite.run_bench(suite.BenchPlan.smoke(), str(tmp_path), progress=said.append)
    assert startup_backends == [("torch",)]
    assert "start-up: onnxruntime skipped (pip install 'camstream[onnx]')" in said
    assert set(results["failed"]) == {"explainers", "kernels", "pipeline", "streams", "edge", "backends", "one_core",
                                      "extensions", "detectors", "faithful", "malloc"}
    assert results["failed"]["kernels"] == "RuntimeError: bench_kernels broke"
    assert any(line.startswith("kernels: failed (RuntimeError: bench_kernels broke)") for line in said)
    written = json.loads((tmp_path / "bench.json").read_text())
    assert written["startup"]["torch"]["warm_s"]["median"] == 2.3 and written["failed"] == results["failed"]
    text = (tmp_path / "bench.md").read_text()
    assert "## Sections that failed" in text and "- malloc: RuntimeError: compare_malloc broke" in text
    assert "| first frame, torch, cache warm | 2.3 s | 2.3 s | 2.3 s |" in text


def test_a_run_a_shell_execs_after_other_work_counts_from_camstream_not_from_the_shell():
    """`sh -c "setup && camstream run"` execs camstream in the shell's process, whose start is the shell's: the
    report's time to the first frame counted the setup too (a trial's `sleep 6` showed as 6 s of start-up)."""
    import subprocess
    import sys

    child = ("import time; from camstream.runtime import process_start_time, run_start_time; "
             "print(time.time() - run_start_time(), time.time() - process_start_time())")
    after_setup = subprocess.run(["bash", "-c", f'sleep 1.5 && exec "{sys.executable}" -c "{child}"'],
                                 capture_output=True, text=True, check=True).stdout.split()
    since_run, since_process = map(float, after_setup)
    assert since_process >= 1.5 and since_run < 0.5, after_setup
    direct = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True).stdout.split()
    since_run, since_process = map(float, direct)
    assert abs(since_run - since_process) < 0.01, direct  # launched directly: the process's own start
