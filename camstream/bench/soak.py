"""Soak: many frames through the pipeline; RSS growth after warm-up, threads and descriptors at the end.

    python -m camstream.bench.soak --frames 10000 --out bench-out/soak
"""

from __future__ import annotations

import argparse
import json
import os

from camstream.bench.clips import derive_clip
from camstream.bench.suite import default_footage
from camstream.runtime import tune_glibc_malloc
from camstream.storage import write_json_atomic
from camstream.stream.pipeline import Pipeline, PipelineConfig


def soak(frames: int, out_dir: str, width: int = 320, height: int = 180) -> dict:
    """Run `frames` frames (the footage looped, rescaled) to a null sink; the figures that show a leak."""
    source = default_footage()
    clip = os.path.join(out_dir, f"soak_{width}x{height}_{frames}.mp4")
    derive_clip(source, clip, width, height, fps=60, loops=-(-frames // 200) + 1, max_frames=frames)
    report = Pipeline(PipelineConfig(source=clip, sinks=("null",), out_dir=out_dir)).run()["streams"][0]
    keys = ("frames_in", "frames_out", "fps", "rss_start_mb", "rss_warm_mb", "rss_end_mb", "rss_peak_mb",
            "rss_growth_after_warmup_pct", "threads_start", "threads_end", "fds_start", "fds_end")
    return {key: report[key] for key in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=10000)
    parser.add_argument("--out", default="bench-out/soak")
    args = parser.parse_args()
    tune_glibc_malloc()
    os.makedirs(args.out, exist_ok=True)
    figures = soak(args.frames, args.out)
    write_json_atomic(os.path.join(args.out, "soak.json"), figures)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
