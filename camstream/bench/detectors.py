"""Detector speed: explaining the top boxes against the detector's plain forward and against pytorch-grad-cam's
per-box loop (one forward and backward per box) on the same model, frames, boxes and layer; and a 720p clip
explained box by box to a file."""

from __future__ import annotations

import copy
import importlib.util
import os
from collections.abc import Callable

import numpy as np
import torch

from camstream.bench.clips import derive_clip
from camstream.bench.explainers import load_quietly, real_frames
from camstream.bench.timing import interleaved_samples, ratio, spread
from camstream.catalog import BUNDLED_DETECTOR
from camstream.explain.detector import BoxGradCam, HookedDetector
from camstream.model.detectors import DetectorModel
from camstream.model.preprocess import Preprocessor


class _DictOutput(torch.nn.Module):
    """A `DetectorModel` whose forward returns torchvision's list of dicts, as pytorch-grad-cam's
    `FasterRCNNBoxScoreTarget` reads detections."""

    def __init__(self, detector: DetectorModel) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, x: torch.Tensor) -> list[dict]:
        return [{"boxes": o.boxes, "labels": o.labels, "scores": o.scores} for o in self.detector(x)]


def busy_frame(detector: DetectorModel, frames: list[np.ndarray], preprocess: Preprocessor,
               boxes: int) -> tuple[torch.Tensor, int]:
    """The frame with the most detections (at least `boxes` if any has them), normalised, and its box count."""
    best, best_count = None, -1
    for frame in frames:
        batch = preprocess([frame]).clone()
        with torch.inference_mode():
            count = len(detector(batch)[0].scores)
        if count > best_count:
            best, best_count = batch, count
        if count >= boxes:
            break
    assert best is not None
    return best, best_count


def bench_detector(video: str, rounds: int = 15, boxes: int = 5, score_threshold: float = 0.2,
                   progress: Callable[[str], None] | None = None, device: str = "cpu") -> dict:
    """ms per frame at batch 1 of the bundled detector's plain forward, camstream's box-gradcam of its top
    `boxes` boxes (one batched backward) and of its top box alone (what each further box adds shows between the
    two), and pytorch-grad-cam's Grad-CAM of the same boxes one by one; medians and interquartile ranges of
    interleaved rounds, and the ratios. On `device` "cuda" each timed call ends when the GPU has finished."""
    spec = load_quietly(BUNDLED_DETECTOR)
    detector: DetectorModel = spec.module.to(device)
    detector.score_threshold, detector.max_boxes = score_threshold, boxes
    preprocess = Preprocessor(spec, 1, device)  # its frames are on `device`
    batch, found = busy_frame(detector, real_frames(video, 24, spec.input_size), preprocess, boxes)
    pristine = copy.deepcopy(detector)  # copied before hooking: a hooked model cannot be deep-copied
    hooked = HookedDetector(detector, (3, *spec.input_size))
    method = BoxGradCam(hooked)

    def plain() -> object:
        with torch.inference_mode():
            return pristine(batch)

    def top_box_only() -> object:
        detector.max_boxes = 1
        try:
            return method(batch)
        finally:
            detector.max_boxes = boxes

    contenders: dict[str, Callable[[], object]] = {"plain": plain, "box-gradcam": lambda: method(batch),
                                                   "box-gradcam, top box": top_box_only}
    missing = importlib.util.find_spec("pytorch_grad_cam") is None
    if not missing:
        contenders["pytorch-grad-cam loop"] = _peer_loop(pristine, batch, hooked.layer_name)

    def tick(index: int) -> None:
        if progress and (index + 1) % 5 == 0:
            progress(f"detector {BUNDLED_DETECTOR}: round {index + 1}/{rounds}")

    if device != "cpu":
        contenders = {name: _finished_on(device, run) for name, run in contenders.items()}
    samples = interleaved_samples(contenders, rounds=rounds, on_round=tick)
    hooked.close()
    timed = {name: spread(values) for name, values in samples.items()}
    ratios = {"box-gradcam_to_plain": ratio(samples["box-gradcam"], samples["plain"]),
              "box-gradcam_top_box_to_plain": ratio(samples["box-gradcam, top box"], samples["plain"])}
    if not missing:
        ratios["pytorch-grad-cam_loop_to_box-gradcam"] = ratio(samples["pytorch-grad-cam loop"],
                                                                samples["box-gradcam"])
    return {"model": BUNDLED_DETECTOR, "device": device, "layer": hooked.layer_name, "input": list(spec.input_size),
            "batch": 1, "boxes": found if found < boxes else boxes, "rounds": rounds, "ms": timed, "ratios": ratios,
            "missing_peers": ["pytorch-grad-cam"] if missing else []}


def _finished_on(device: str, run: Callable[[], object]) -> Callable[[], object]:
    """`run`, returning once `device` has finished the work it queued (a GPU runs asynchronously)."""

    def finished() -> object:
        result = run()
        torch.cuda.synchronize(device)
        return result

    return finished


def _peer_loop(detector: DetectorModel, batch: torch.Tensor, layer: str) -> Callable[[], object]:
    """pytorch-grad-cam's Grad-CAM of each box in turn (FasterRCNNBoxScoreTarget: the box's score, matched by
    IoU), on its own copy of the detector and the same layer."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget

    model = _DictOutput(copy.deepcopy(detector)).eval()
    with torch.inference_mode():
        found = model(batch)[0]
    layer_module = dict(model.detector.named_modules())[layer]
    extractor = GradCAM(model=model, target_layers=[layer_module],
                        reshape_transform=None)
    targets = [[FasterRCNNBoxScoreTarget(labels=[int(label)], bounding_boxes=box[None].detach())]
               for box, label in zip(found["boxes"], found["labels"], strict=True)]

    def loop() -> object:
        return [extractor(input_tensor=batch, targets=one) for one in targets]

    return loop


def bench_detector_pipeline(video: str, clips_dir: str, frames: int = 120,
                            progress: Callable[[str], None] | None = None) -> dict:
    """fps and per-stage p50 of the bundled detector explaining every box of a 720p clip to a file."""
    from camstream.stream.pipeline import Pipeline, PipelineConfig

    clip = os.path.join(clips_dir, f"faces_720p_{frames}.mp4")
    derive_clip(video, clip, 1280, 720, fps=30, loops=-(-frames // 275), max_frames=frames)
    if progress:
        progress(f"detector pipeline: 720p → file, {frames} frames")
    config = PipelineConfig(source=clip, sinks=("file",), out_dir=os.path.join(clips_dir, "run_faces_720p_file"),
                            model=BUNDLED_DETECTOR, max_batch=2)
    report = Pipeline(config).run()["streams"][0]
    return {"clip": f"1280x720, {frames} frames", "fps": report["fps"], "boxes_per_frame": report["boxes_per_frame"],
            "stages": {name: report["stages"][name]["p50_ms"] for name in ("decode", "inference", "boxes", "render",
                                                                          "sink")},
            "latency_p95_ms": report["latency_ms"]["p95"], "frames_out": report["frames_out"]}


def markdown(section: dict | None) -> list[str]:
    """bench.md's detector section."""
    if section is None:
        return ["## Detectors", "", "Skipped: pip install 'camstream[detect]' brings the bundled detector.", ""]
    speed = section["speed"]
    ms = speed["ms"]
    lines = ["## Detectors", "",
             f"{speed['model']} at {speed['input'][0]}×{speed['input'][1]}, batch 1, on {speed.get('device', 'cpu')}, "
             f"{speed['boxes']} boxes explained "
             f"on layer {speed['layer']}; {speed['rounds']} interleaved rounds, median (quartiles) ms per frame:", "",
             "| contender | ms | ratio |", "|---|---|---|"]
    ratios = speed["ratios"]
    for name, row in ms.items():
        ratio = {"box-gradcam": ratios["box-gradcam_to_plain"],
                 "box-gradcam, top box": ratios.get("box-gradcam_top_box_to_plain")}.get(name)
        shown = f"{ratio['median']:.2f}× plain (per round {ratio['per_round_q1']:.2f}–{ratio['per_round_q3']:.2f})" \
            if ratio else ""
        if name == "pytorch-grad-cam loop":
            peer = ratios["pytorch-grad-cam_loop_to_box-gradcam"]
            shown = (f"{peer['median']:.2f}× box-gradcam (per round {peer['per_round_q1']:.2f}–"
                     f"{peer['per_round_q3']:.2f})")
        lines.append(f"| {name} | {row['median']:.1f} ({row['q1']:.1f}–{row['q3']:.1f}) | {shown} |")
    if speed["missing_peers"]:
        lines.append(f"\nNot installed: {', '.join(speed['missing_peers'])}.")
    run = section.get("pipeline")
    if run:
        stages = ", ".join(f"{name} {value:.1f}" for name, value in run["stages"].items())
        lines += ["", f"720p → file, every box of every frame explained: **{run['fps']:.1f} fps**, "
                      f"{run['boxes_per_frame']:.1f} boxes per frame; p50 ms {stages}; latency p95 "
                      f"{run['latency_p95_ms']:.0f} ms."]
    return [*lines, ""]
