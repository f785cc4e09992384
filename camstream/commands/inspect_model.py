"""`camstream inspect MODEL`: what camstream will do with a model — its kind, input, class names, candidate
target layers, the methods that apply and what each costs on this machine — before any video is run."""

from __future__ import annotations

import os
import statistics

import torch

from camstream.bench.timing import interleaved_samples
from camstream.errors import ModelError
from camstream.explain.api import model_kind
from camstream.explain.base import SCRIPTED_MODEL, spatial_layers
from camstream.explain.registry import DEFAULT_METHOD, hook_model, make_method, methods_for
from camstream.model.card import ModelCard, sidecar_path
from camstream.model.load import load_model


def inspect_model(model: str, weights: str | None = None, card: ModelCard | None = None, layer: str | None = None,
                  rounds: int = 5) -> dict:
    """The facts `camstream inspect` prints for `model` (a name or file) with `weights` and the options' `card`;
    each method is timed on one frame at the model's input size in `rounds` rounds, each round timing the plain
    forward and every method side by side (after one untimed round)."""
    spec = load_model(model, weights, card)
    if isinstance(spec.module, torch.jit.ScriptModule):  # run, explain and export refuse it in the same words
        raise ModelError(f"{model}: {SCRIPTED_MODEL}")
    height, width = spec.input_size
    example = torch.rand(1, 3, height, width)
    kind = model_kind(spec.module, example)
    sidecars = [sidecar_path(p) for p in (model, weights) if p and os.path.isfile(sidecar_path(p))]
    layers = [r for r in spatial_layers(spec.module, example) if not r.pools][-6:]

    def plain() -> object:
        with torch.inference_mode():
            return spec.module(example)

    with hook_model(spec.module, (3, height, width), layer or spec.layer) as hooked:
        chosen_layer = hooked.layer_name
        contenders = {"plain": plain}
        for name in methods_for(kind):
            method = make_method(name, hooked)
            contenders[name] = lambda method=method: method(example)
        # round by round, so that a busy moment on a shared machine hits the baseline and every method alike
        samples = {name: [s * 1e3 for s in values]
                   for name, values in interleaved_samples(contenders, rounds, warmup=1).items()}
    plain_ms = statistics.median(samples.pop("plain"))
    costs = [{"method": name, "ms": round(statistics.median(times), 2), "ms_min": round(min(times), 2),
              "ms_max": round(max(times), 2), "vs_plain": round(statistics.median(times) / plain_ms, 2)}
             for name, times in samples.items()]
    return {"model": spec.name, "kind": str(kind), "parameters_m": round(sum(p.numel() for p in
                                                                          spec.module.parameters()) / 1e6, 2),
            "input": {"size": [height, width], "resize": spec.resize, "mean": list(spec.mean), "std": list(spec.std)},
            "classes": len(spec.labels), "labels": list(spec.labels[:5]), "model_cards": sorted(sidecars),
            "layers": [{"name": r.name, "shape": list(r.shape[1:]), "default": r.name == chosen_layer}
                       for r in layers],
            "layer": chosen_layer, "default_method": spec.method or DEFAULT_METHOD[kind],
            "plain_ms": round(plain_ms, 2), "methods": costs, "threads": torch.get_num_threads()}


def inspect_text(facts: dict) -> str:
    """`inspect_model`'s facts as the lines `camstream inspect` prints."""
    size = facts["input"]["size"]
    names = "; ".join(facts["labels"]) + ("; …" if facts["classes"] > len(facts["labels"]) else "")
    lines = [f"model    {facts['model']}: {facts['kind']}, {facts['parameters_m']} M parameters",
             f"input    {size[0]}×{size[1]} RGB, {facts['input']['resize']}, mean {facts['input']['mean']}, "
             f"std {facts['input']['std']}",
             f"classes  {facts['classes']}" + (f": {names}" if names else " (no names: shown as 'class N')"),
             f"cards    {', '.join(facts['model_cards']) or 'none (defaults and options only)'}",
             "layers   " + ", ".join(f"{layer['name']} {'×'.join(map(str, layer['shape']))}"
                                     + (" (default)" if layer["default"] else "") for layer in facts["layers"]),
             f"cost     one frame, {facts['threads']} threads: plain forward {facts['plain_ms']} ms"]
    for cost in facts["methods"]:
        marker = " (default)" if cost["method"] == facts["default_method"] else ""
        lines.append(f"         {cost['method']:<14} {cost['ms']:>8.2f} ms  {cost['vs_plain']:>5.2f}× plain  "
                     f"(min {cost['ms_min']}, max {cost['ms_max']}){marker}")
    return "\n".join(lines)
