"""The faithful threshold's cost: Grad-CAM per explained frame on the torch backend, alone and with the search
(`--threshold faithful`, 7 candidates in one batched forward) on every frame and on every 8th, the frames between
reusing its choice — as the stream's inference stage runs them, interleaved, batch 1."""

from __future__ import annotations

from collections.abc import Callable

from camstream.backends import BackendRequest, make_backend
from camstream.bench.explainers import real_frames
from camstream.bench.timing import interleaved_samples, ratio, spread
from camstream.explain.faithful import CANDIDATES, FaithfulSearch
from camstream.explain.result import host_array

EVERY = (1, 8)


def bench_faithful(video: str, rounds: int = 10, model: str = "efficientnet_lite0",
                   progress: Callable[[str], None] | None = None) -> dict:
    """ms per explained frame of plain Grad-CAM and of Grad-CAM with the faithful search every N-th frame (N of
    `EVERY`), over runs of 8 frames of `video`; medians, spreads and the ratios to plain."""
    backend = make_backend(BackendRequest("torch", model, "gradcam", max_batch=len(CANDIDATES)))
    frames = real_frames(video, 8, backend.input_size)
    search = FaithfulSearch(0.95)
    reached: list[bool] = []

    def run(every: int | None) -> Callable[[], None]:
        def explain_frames() -> None:
            for index, frame in enumerate(frames):
                found = backend.explain([frame])
                if every is not None and index % every == 0:
                    cam = host_array(found.maps)[0]
                    reached.append(search(frame, cam, int(found.class_ids[0]), float(found.scores[0]),
                                          backend.class_scores).reached)
        return explain_frames

    contenders = {"gradcam": run(None), **{f"faithful every {every}": run(every) for every in EVERY}}
    if progress:
        progress(f"faithful threshold: {rounds} rounds of {len(frames)} frames")
    try:
        samples = interleaved_samples(contenders, rounds=rounds, warmup=1)
    finally:
        backend.close()
    per_frame = {name: [value / len(frames) for value in values] for name, values in samples.items()}
    return {"model": model, "backend": "torch", "batch": 1, "candidates": list(CANDIDATES), "rounds": rounds,
            "frames_per_round": len(frames),
            "ms_per_frame": {name: spread(values) for name, values in per_frame.items()},
            "ratio_to_gradcam": {name: ratio(values, per_frame["gradcam"]) for name, values in per_frame.items()
                                 if name != "gradcam"},
            "reached_share": round(sum(reached) / max(len(reached), 1), 3)}


def markdown(section: dict | None) -> list[str]:
    """bench.md's lines for the section."""
    if not section:
        return []
    lines = ["\n## The faithful threshold's cost (per explained frame, torch, batch 1)\n",
             f"{section['model']}; the search sends {len(section['candidates'])} candidates through the model in one "
             f"batch; {section['rounds']} interleaved rounds of {section['frames_per_round']} frames; R = 0.95 was "
             f"reached on {section['reached_share']:.0%} of the searches.\n",
             "| | ms per frame (median, q1–q3) | × Grad-CAM (per-round q1–q3) |", "|---|---|---|"]
    for name, timed in section["ms_per_frame"].items():
        times = section["ratio_to_gradcam"].get(name)
        ratio_cell = "1" if times is None else (
            f"{times['median']:.2f} ({times['per_round_q1']:.2f}–{times['per_round_q3']:.2f})")
        lines.append(f"| {name} | {timed['median']:.1f} ({timed['q1']:.1f}–{timed['q3']:.1f}) | {ratio_cell} |")
    return lines
