"""Plain and explained ms/frame on every backend, side by side in one interleaved run.

For each setting (threads, batch): torch (traced + frozen, what `camstream run` uses), ONNX Runtime and OpenVINO
(f32), each plain (the model and its preprocessing alone) and explained (Grad-CAM and Recipro-CAM inside the
graph). Ratios: explained / plain within a backend, and every figure / torch-frozen plain. All take the same
uint8 frames at the model's size, so preprocessing is inside every figure.

The baseline an edge user would write by hand sits beside them on each runtime: the model alone, exported as a
float graph and fed frames preprocessed by NumPy (cast, (x − mean) / std, NHWC → NCHW, timed with the call).
`ratio_to_float_numpy` is each graph's figure over that one.

The peer, openvino-xai's Recipro-CAM, pins an older OpenVINO; where CAMSTREAM_XAI_PYTHON names the Python of an
environment that has it, `openvino_xai_peer.py` times it there beside the plain graph and camstream's graphs on
that one OpenVINO (1 thread, batch 1: its insertion fails at batch > 1).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
from collections.abc import Callable

import numpy as np
import torch

from camstream.backends.export import export_model, export_plain
from camstream.backends.graph import RUNTIMES, GraphBackend
from camstream.backends.torch_backend import TorchBackend
from camstream.bench.explainers import real_frames
from camstream.bench.timing import interleaved_samples

SETTINGS = ((1, 1), (2, 8))  # (threads, batch): the edge profile, and a batched desktop profile
METHODS = ("gradcam", "recipro")


def bench_backends(video: str, model: str = "efficientnet_lite0", settings=SETTINGS, rounds: int = 20,
                   progress: Callable[[str], None] | None = None) -> dict:
    """ms/frame (median and spread) of plain and explained inference on every backend, per setting."""
    folder = tempfile.mkdtemp(prefix="camstream-bench-")
    plain_graph = export_plain(os.path.join(folder, "plain.onnx"), model)
    float_graph = export_plain(os.path.join(folder, "float.onnx"), model, layout="normalised")
    graphs = {method: export_model(os.path.join(folder, f"{method}.onnx"), model, method)["out"]
              for method in METHODS}
    threads_before = torch.get_num_threads()
    results = {"model": model, "settings": []}
    try:
        for threads, batch in settings:
            if progress:
                progress(f"backends: {threads} thread(s), batch {batch}")
            frames = real_frames(video, batch, (224, 224))
            results["settings"].append(_one_setting(frames, threads, batch, model, plain_graph, float_graph, graphs,
                                                    rounds))
    finally:
        torch.set_num_threads(threads_before)
    results["peer"] = openvino_xai_peer(plain_graph, graphs, frames_of=lambda: real_frames(video, 1, (224, 224)),
                                        rounds=rounds, progress=progress)
    return results


def openvino_xai_peer(plain_graph: str, graphs: dict[str, str], frames_of: Callable[[], list[np.ndarray]],
                      rounds: int, progress: Callable[[str], None] | None = None,
                      python: str | None = None) -> dict:
    """openvino-xai's Recipro-CAM against the plain graph and camstream's graphs, run by `python` (default
    $CAMSTREAM_XAI_PYTHON) on its own OpenVINO; {"skipped": why} when there is no such Python or it fails."""
    python = python or os.environ.get("CAMSTREAM_XAI_PYTHON")
    if not python:
        return {"skipped": "set CAMSTREAM_XAI_PYTHON to the Python of an environment with openvino-xai"}
    if progress:
        progress("backends: the openvino-xai peer")
    frames_path = os.path.join(os.path.dirname(plain_graph), "peer-frames.npy")
    np.save(frames_path, np.stack(frames_of()))
    script = os.path.join(os.path.dirname(__file__), "openvino_xai_peer.py")
    ours = [f"{method}={path}" for method, path in graphs.items()]
    try:
        done = subprocess.run([python, script, plain_graph, frames_path, "--rounds", str(rounds), "--ours", *ours],
                              capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"skipped": f"{python}: {exc}"}
    if done.returncode != 0:
        return {"skipped": (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1][:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def numpy_normalised(frames: list[np.ndarray], mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """uint8 (H, W, 3) frames as the float (B, 3, H, W) batch (x/255 − mean) / std, by NumPy alone: how a
    user feeds a float model by hand."""
    scale = (1.0 / (255.0 * np.asarray(std, np.float32))).astype(np.float32)
    shift = (-np.asarray(mean, np.float32) / np.asarray(std, np.float32)).astype(np.float32)
    return np.ascontiguousarray((np.stack(frames).astype(np.float32) * scale + shift).transpose(0, 3, 1, 2))


def _one_setting(frames: list[np.ndarray], threads: int, batch: int, model: str, plain_graph: str,
                 float_graph: str, graphs: dict[str, str], rounds: int) -> dict:
    torch_backend = TorchBackend(model, "gradcam", max_batch=batch, threads=threads)
    mean, std = torch_backend.spec.mean, torch_backend.spec.std
    contenders: dict[str, Callable[[], object]] = {
        "torch plain": lambda: torch_backend.hooked.forward(torch_backend.preprocessor(frames)),
        "torch gradcam": lambda: torch_backend.explain(frames),
    }
    for name, session in RUNTIMES.items():  # opened as the backends open the explained graphs
        by_hand = session(float_graph, threads)
        contenders[f"{name} float + numpy"] = lambda run=by_hand: run(numpy_normalised(frames, mean, std))
        plain = session(plain_graph, threads)
        contenders[f"{name} plain"] = lambda run=plain: run(np.stack(frames))
        for method, graph in graphs.items():
            backend = GraphBackend(graph, name, threads)
            contenders[f"{name} {method}"] = lambda b=backend: b.explain(frames)
    samples = interleaved_samples(contenders, rounds=rounds)
    torch_backend.close()
    per_frame = {name: [s * 1e3 / batch for s in values] for name, values in samples.items()}
    reference = statistics.median(per_frame["torch plain"])
    rows = {}
    for name, values in per_frame.items():
        backend = name.split()[0]
        median = statistics.median(values)
        rows[name] = {"ms": round(median, 3), "min_ms": round(min(values), 3), "max_ms": round(max(values), 3),
                      "ratio_to_own_plain": round(median / statistics.median(per_frame[f"{backend} plain"]), 3),
                      "ratio_to_torch_frozen_plain": round(median / reference, 3)}
        by_hand = per_frame.get(f"{backend} float + numpy")
        if by_hand:
            rows[name]["ratio_to_float_numpy"] = round(median / statistics.median(by_hand), 3)
    return {"threads": threads, "batch": batch, "rounds": rounds, "ms_per_frame": rows}


def markdown(results: dict) -> list[str]:
    """The backends table: one row per (setting, contender)."""
    lines = [f"Model {results['model']}; ms/frame median (min–max) over interleaved rounds; ratios of medians.\n",
             "`float + numpy`: the model alone as a float graph, fed frames preprocessed by NumPy (timed with it).\n",
             "| threads, batch | backend, run | ms/frame | vs own plain | vs float + numpy | vs torch frozen plain |",
             "|---|---|---|---|---|---|"]
    for setting in results["settings"]:
        for name, row in setting["ms_per_frame"].items():
            by_hand = f"{row['ratio_to_float_numpy']:.2f}×" if "ratio_to_float_numpy" in row else "—"
            lines.append(f"| {setting['threads']}, {setting['batch']} | {name} | {row['ms']:.2f} "
                         f"({row['min_ms']:.2f}–{row['max_ms']:.2f}) | {row['ratio_to_own_plain']:.2f}× | "
                         f"{by_hand} | {row['ratio_to_torch_frozen_plain']:.2f}× |")
    return lines + _peer_markdown(results.get("peer") or {})


def _peer_markdown(peer: dict) -> list[str]:
    if "contenders" not in peer:
        return [f"\nPeer openvino-xai: not measured ({peer.get('skipped', 'not run')}).\n"]
    lines = [f"\nPeer: openvino-xai's Recipro-CAM on OpenVINO {peer['openvino'].split('-')[0]} (its own pin), "
             f"{peer['threads']} thread, batch {peer['batch']}, beside camstream's graphs on that OpenVINO:\n",
             "| run | ms/frame | vs plain |", "|---|---|---|"]
    for name, row in peer["contenders"].items():
        lines.append(f"| {name} | {row['median_ms']:.2f} ({row['min_ms']:.2f}–{row['max_ms']:.2f}) | "
                     f"{row['vs_plain']:.2f}× |")
    return lines


if __name__ == "__main__":
    import argparse

    from camstream.stream.config import demo_clip

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--model", default="efficientnet_lite0")
    args = parser.parse_args()
    figures = bench_backends(demo_clip(), args.model, rounds=args.rounds, progress=print)
    print("\n".join(markdown(figures)))
