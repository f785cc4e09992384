"""The peer, openvino-xai's Recipro-CAM inserted into the plain graph, timed beside camstream's graphs.

openvino-xai pins an older OpenVINO than camstream's extra, so this file runs in a separate environment with
only `openvino-xai` and NumPy installed (it imports nothing of camstream):

    python camstream/bench/openvino_xai_peer.py PLAIN.onnx FRAMES.npy --ours gradcam=G.onnx recipro=R.onnx

Every contender runs on that one OpenVINO (f32, the given threads), interleaved round by round, on the same
uint8 frames; it prints one JSON object of ms/frame samples. `camstream bench` calls it when
CAMSTREAM_XAI_PYTHON names that environment's Python.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plain", help="the plain graph (camstream.backends.export.export_plain)")
    parser.add_argument("frames", help=".npy of uint8 frames (B, H, W, 3)")
    parser.add_argument("--ours", nargs="*", default=[], metavar="NAME=GRAPH", help="camstream's explained graphs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv)
    try:
        import numpy as np
        import openvino
        import openvino_xai
    except ImportError as exc:
        print(f"openvino_xai_peer: needs {exc.name} in this environment (pip install openvino-xai)", file=sys.stderr)
        return 2
    core = openvino.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": str(args.threads)}
    frames = np.load(args.frames)[:args.batch]
    class_ids = np.full(len(frames), -1, np.int64)
    plain_model = core.read_model(args.plain)
    xai_model = openvino_xai.insert_xai(core.read_model(args.plain), task=openvino_xai.Task.CLASSIFICATION,
                                        explain_method=openvino_xai.Method.RECIPROCAM)
    requests = {"plain": (core.compile_model(plain_model, "CPU", config).create_infer_request(), {0: frames}),
                "openvino-xai recipro": (core.compile_model(xai_model, "CPU", config).create_infer_request(),
                                         {0: frames})}
    for entry in args.ours:
        name, path = entry.split("=", 1)
        request = core.compile_model(path, "CPU", config).create_infer_request()
        requests[f"camstream {name}"] = (request, {"frames": frames, "class_ids": class_ids})
    samples: dict[str, list[float]] = {name: [] for name in requests}
    for request, inputs in requests.values():  # warm-up
        request.infer(inputs)
    for _ in range(args.rounds):
        for name, (request, inputs) in requests.items():
            began = time.perf_counter()
            request.infer(inputs)
            samples[name].append((time.perf_counter() - began) * 1e3 / len(frames))
    plain = statistics.median(samples["plain"])
    print(json.dumps({"openvino": openvino.__version__, "threads": args.threads, "batch": len(frames),
                      "contenders": {name: {"median_ms": round(statistics.median(values), 3),
                                            "min_ms": round(min(values), 3), "max_ms": round(max(values), 3),
                                            "vs_plain": round(statistics.median(values) / plain, 3)}
                                     for name, values in samples.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
