"""Models beyond CNNs: ms per input of each explanation method next to plain inference of the same model.

ViTs explain one 224×224 image (random weights: speed does not depend on them), the temporal model one
16-frame clip through a MobileNetV2 feature extractor and a GRU, the GCN one graph. Run alone with
`python -m camstream.bench.extensions --out DIR`, or as part of `camstream bench`.
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Callable

import torch
import torchvision
from torch import nn

from camstream.bench.timing import interleaved_medians
from camstream.explain import hook_model, make_method
from camstream.explain.graph import GCN
from camstream.explain.registry import REGISTRY
from camstream.explain.result import ModelKind
from camstream.explain.temporal import ClipClassifier
from camstream.model.load import load_model
from camstream.storage import write_json_atomic


def _bound(method: Callable, *args: object) -> Callable[[], object]:
    return lambda: method(*args)


def _entry(kind: str, model: str, inputs: str, contenders: dict[str, Callable[[], object]], rounds: int) -> dict:
    medians = interleaved_medians(contenders, rounds=rounds, warmup=1)
    plain = medians.pop("plain") * 1e3
    return {"kind": kind, "model": model, "input": inputs, "plain_ms": round(plain, 3),
            "methods": {name: {"ms": round(value * 1e3, 3), "ratio_to_plain": round(value * 1e3 / plain, 3)}
                        for name, value in medians.items()}}


def bench_vit(name: str, rounds: int, methods: tuple[str, ...] = ("vit-rollout", "vit-recipro")) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights: fine for timing
        spec = load_model(name)
    image = torch.rand(1, 3, *spec.input_size)
    hooked = hook_model(spec.module, (3, *spec.input_size))
    contenders = {"plain": lambda: hooked.forward(image)}
    for method in methods:
        contenders[method] = _bound(make_method(method, hooked), image)
    try:
        return _entry("vit", name, "1 image 224×224", contenders, rounds)
    finally:
        hooked.close()


def bench_temporal(rounds: int, steps: int = 16, side: int = 112) -> dict:
    encoder = nn.Sequential(torchvision.models.mobilenet_v2().features, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model = ClipClassifier(encoder, 1280, classes=10, hidden=128, cell="gru").eval()
    clip = torch.rand(1, steps, 3, side, side)

    def plain() -> torch.Tensor:
        with torch.inference_mode():
            return model(clip)

    contenders = {"plain": plain, **{name: _bound(method(), model, clip)
                                     for name, method in REGISTRY[ModelKind.TEMPORAL].items()}}
    return _entry("temporal", "MobileNetV2 features + GRU(128)", f"1 clip of {steps} frames {side}×{side}",
                  contenders, rounds)


def bench_graph(rounds: int, nodes: int = 2000, edges: int = 5000) -> dict:
    generator = torch.Generator().manual_seed(0)
    model = GCN(16, 64, 2).eval()
    x = torch.randn(nodes, 16, generator=generator)
    pairs = torch.randint(0, nodes, (2, edges), generator=generator)
    edge_index = torch.cat([pairs, pairs.flip(0)], 1)

    def plain() -> torch.Tensor:
        with torch.inference_mode():
            return model(x, edge_index)

    contenders = {"plain": plain,
                  **{name: _bound(method(), model, x, edge_index)
                     for name, method in REGISTRY[ModelKind.GRAPH].items()}}
    return _entry("graph", "GCN 2×64", f"1 graph, {nodes} nodes, {2 * edges} directed edges", contenders, rounds)


def bench_extensions(rounds: int = 10, quick: bool = False, progress: Callable[[str], None] = print) -> list[dict]:
    """Every extension's entry; `quick` leaves out vit_b_16 (its Recipro-CAM takes seconds per image)."""
    results = []
    progress("extensions: deit_tiny")
    results.append(bench_vit("deit_tiny", rounds))
    if not quick:
        progress("extensions: vit_b_16 (vit-recipro takes seconds per image)")
        results.append(bench_vit("vit_b_16", max(2, rounds // 4)))
    progress("extensions: temporal")
    results.append(bench_temporal(rounds))
    progress("extensions: graph")
    results.append(bench_graph(rounds))
    return results


def markdown(results: list[dict]) -> list[str]:
    """Markdown table lines."""
    lines = ["| kind | model | input | plain ms | method: ms (ratio to plain) |", "|---|---|---|---|---|"]
    for entry in results:
        methods = "; ".join(f"{name} {value['ms']:.1f} ({value['ratio_to_plain']:.2f}×)"
                            for name, value in entry["methods"].items())
        lines.append(f"| {entry['kind']} | {entry['model']} | {entry['input']} | {entry['plain_ms']:.1f} | {methods} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-out", help="folder for extensions.json / extensions.md")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="leave out vit_b_16")
    args = parser.parse_args()
    results = bench_extensions(args.rounds, args.quick)
    os.makedirs(args.out, exist_ok=True)
    write_json_atomic(os.path.join(args.out, "extensions.json"), results)
    table = "\n".join(markdown(results)) + "\n"
    with open(os.path.join(args.out, "extensions.md"), "w") as handle:
        handle.write(table)
    print(table)


if __name__ == "__main__":
    main()
