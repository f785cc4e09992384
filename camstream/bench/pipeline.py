"""Pipeline speed end to end on clips derived from real dashcam footage, against the model's own ceiling."""

from __future__ import annotations

import copy
import os

import torch

from camstream.bench.clips import derive_clip
from camstream.bench.explainers import load_quietly, real_frames
from camstream.bench.timing import interleaved_medians
from camstream.explain import HookedModel
from camstream.model.preprocess import Preprocessor
from camstream.stream.pipeline import Pipeline, PipelineConfig


def inference_ceiling_fps(model_name: str, batch: int, video: str, rounds: int = 15,
                          frozen: bool = True) -> dict[str, float]:
    """Frames per second of plain batched inference (channels-last), eager and traced + frozen, on all
    cores with nothing else running: what no explainer in a pipeline can beat."""
    spec = load_quietly(model_name)
    model = spec.module.to(memory_format=torch.channels_last)
    inputs = Preprocessor(spec, batch)(real_frames(video, batch, spec.input_size)).clone()
    hooked = HookedModel(copy.deepcopy(model), (3, *spec.input_size))
    contenders = {"eager": lambda: hooked_free_forward(model, inputs)}
    if frozen and hooked.freeze(inputs):
        contenders["frozen"] = lambda: hooked.forward(inputs)
    seconds = interleaved_medians(contenders, rounds=rounds)
    hooked.close()
    return {name: batch / value for name, value in seconds.items()}


def hooked_free_forward(model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(inputs)


def bench_pipeline(source: str, clips_dir: str, sizes: dict[str, tuple[int, int]], frames: int,
                   sinks: tuple[str, ...] = ("null", "file"), model: str = "efficientnet_lite0",
                   method: str = "gradcam", max_batch: int = 4, progress=None) -> dict:
    """Achieved fps, fraction of the inference ceiling, per-stage p50/p95, latency p95, peak RSS."""
    results: dict = {}
    for label, (width, height) in sizes.items():
        clip = os.path.join(clips_dir, f"dashcam_{label}_60fps_{frames}.mp4")
        loops = -(-frames // 221)
        derive_clip(source, clip, width, height, fps=60, loops=loops, max_frames=frames)
        for sink in sinks:
            if progress:
                progress(f"pipeline {label} → {sink}")
            ceilings = inference_ceiling_fps(model, max_batch, clip)
            ceiling = max(ceilings.values())
            out_dir = os.path.join(clips_dir, f"run_{label}_{sink}")
            config = PipelineConfig(source=clip, sinks=(sink,), out_dir=out_dir, model=model, method=method,
                                    max_batch=max_batch)
            run = Pipeline(config).run()
            report = run["streams"][0]
            results[f"{label}_{sink}"] = {
                "clip": f"{width}x{height} 60 fps, {frames} frames", "sink": sink, "method": method,
                "fps": report["fps"], "inference_ceiling_fps": round(ceiling, 2),
                "eager_inference_ceiling_fps": round(ceilings["eager"], 2),
                "fraction_of_ceiling": round(report["fps"] / ceiling, 3),
                "fraction_of_eager_ceiling": round(report["fps"] / ceilings["eager"], 3),
                "stages": {name: {"p50_ms": s["p50_ms"], "p95_ms": s["p95_ms"]}
                           for name, s in report["stages"].items()},
                "latency_p95_ms": report["latency_ms"]["p95"], "rss_peak_mb": report["rss_peak_mb"],
                "frames_out": report["frames_out"], "dropped": report["dropped"],
            }
    return results


def bench_streams(source: str, stream_counts: tuple[int, ...] = (1, 2, 4), model: str = "efficientnet_lite0",
                  method: str = "gradcam", max_batch: int = 4, out_dir: str = "bench-out/streams",
                  progress=None) -> dict:
    """Total and per-stream fps with 1, 2, 4 … copies of `source` in one process (null sinks, lossless),
    against the plain batched inference rate measured in the same run."""
    ceiling = max(inference_ceiling_fps(model, max_batch, source).values())
    results: dict = {"clip": os.path.basename(source), "inference_ceiling_fps": round(ceiling, 2), "runs": {}}
    for count in stream_counts:
        if progress:
            progress(f"streams: {count} × {os.path.basename(source)} in one process")
        config = PipelineConfig(sources=(source,) * count, sinks=("null",), model=model, method=method,
                                max_batch=max_batch, out_dir=os.path.join(out_dir, f"{count}"))
        report = Pipeline(config).run()
        total = report["total"]
        per_stream = [stream["fps"] for stream in report["streams"]]
        results["runs"][str(count)] = {"total_fps": total["fps"], "per_stream_fps": per_stream,
                                       "fraction_of_ceiling": round(total["fps"] / ceiling, 3),
                                       "mean_batch": total["mean_batch"], "frames_out": total["frames_out"],
                                       "latency_p95_ms": total["latency_p95_ms_max"]}
    return results
