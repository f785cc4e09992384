"""What the structure promises: a user's model leaves every entry point in the mode it came in, and
`camstream run`'s options and `PipelineConfig` stay one set of settings."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

import camstream
from camstream.backends import torch_backend
from camstream.eval.explainers import make_explainer
from camstream.explain import REGISTRY, ModelKind, evaluation_mode
from camstream.explain.temporal import ClipClassifier
from camstream.model.load import ModelSpec, load_model
from camstream.stream import pipeline as pipeline_module
from camstream.stream.config import DEST_OF_FIELD, NOT_OPTIONS, PipelineConfig, config_from_options
from camstream.stream.timeline import ClipTracker


def small_cnn() -> nn.Module:
    """A CNN whose modes matter: batch norm and dropout behave differently when training."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.5),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 3))


def modes(model: nn.Module) -> list[bool]:
    return [module.training for module in model.modules()]


def test_evaluation_mode_restores_every_submodule_even_on_error():
    model = small_cnn().train()
    model[1].eval()  # a mixed model: its batch norm frozen by the user
    before = modes(model)
    with pytest.raises(RuntimeError), evaluation_mode(model):
        assert not any(modes(model))
        raise RuntimeError("boom")
    assert modes(model) == before


@pytest.mark.parametrize("method", REGISTRY[ModelKind.CNN])
def test_explain_leaves_a_training_model_training(method):
    model = small_cnn().train()
    model[1].eval()
    before = modes(model)
    found = camstream.explain(model, torch.rand(2, 3, 16, 16), method=method)
    assert found.maps.shape == (2, 16, 16)
    assert modes(model) == before
    assert all(parameter.grad is None for parameter in model.parameters())


def test_temporal_explanations_leave_the_clip_model_training():
    model = ClipClassifier(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()), 4, 2).train()
    camstream.explain(model, torch.rand(1, 5, 3, 8, 8))
    assert all(modes(model))
    tracker = ClipTracker(model, steps=3, method="step-gradient", streams=1)
    assert not model.training  # eval while the stream runs
    tracker(torch.rand(2, 3, 8, 8), [0, 0])
    tracker.close()
    assert all(modes(model))


@pytest.mark.parametrize("name", ["gradcam", "rise"])
def test_eval_methods_give_the_model_back_training(name):
    spec = ModelSpec("small", small_cnn().train(), input_size=(16, 16))
    explainer = make_explainer(name, spec)
    explainer(torch.rand(1, 3, 16, 16))
    explainer.close()
    assert all(modes(spec.module))


def test_the_stream_gives_the_model_back_in_its_mode(tmp_path, demo_clip, monkeypatch):
    spec = load_model()
    spec.module.train()
    monkeypatch.setattr(torch_backend, "load_model", lambda *_args: spec)  # the user's model, as it was handed
    config = PipelineConfig(source=str(demo_clip), sinks=("null",), out_dir=str(tmp_path), max_frames=4)
    report = pipeline_module.Pipeline(config).run()
    assert report["total"]["frames_out"] == 4
    assert all(modes(spec.module))


def test_every_setting_of_a_run_is_an_option_of_camstream_run_with_the_same_default():
    from camstream.cli import build_parser

    parser = build_parser()
    options = parser.parse_args(["run"])
    for name in (item.name for item in dataclasses.fields(PipelineConfig)):
        if name in (*NOT_OPTIONS, "source", "sources"):
            continue
        dest = DEST_OF_FIELD.get(name, name)
        assert hasattr(options, dest), f"PipelineConfig.{name} has no camstream run option"
    config = config_from_options(options, ())
    assert config == PipelineConfig()  # the CLI's defaults are the config's


def test_the_catalog_names_what_the_registry_and_the_loaders_implement():
    from camstream import catalog
    from camstream.catalog import EXPORTABLE_METHODS
    from camstream.model.load import model_names

    assert tuple(REGISTRY[ModelKind.CNN]) == catalog.CNN_METHODS  # same order: the first is the default
    assert tuple(REGISTRY[ModelKind.VIT]) == catalog.VIT_METHODS
    assert tuple(REGISTRY[ModelKind.TEMPORAL]) == catalog.CLIP_METHODS
    assert set(EXPORTABLE_METHODS) <= set(catalog.CNN_METHODS)
    assert model_names() == catalog.MODEL_NAMES
    from camstream.backends.graph import RUNTIMES, backend_names

    assert backend_names() == catalog.BACKENDS and set(RUNTIMES) == set(catalog.BACKENDS) - {"torch"}
    from camstream.kernels.colormap import COLORMAPS
    from camstream.stream.sinks import NullSink, Sink

    assert tuple(COLORMAPS) == catalog.COLORMAPS

    def named(kind: type) -> set[str]:  # the sinks that say their own name (JpegSink is a base, not a sink)
        found = {sub.name for sub in kind.__subclasses__() if "name" in vars(sub)}
        return found.union(*(named(sub) for sub in kind.__subclasses__()))

    assert named(Sink) == set(catalog.SINKS) and NullSink.name in catalog.SINKS


HELP_IMPORTS = """
import sys
from camstream.cli import build_parser
build_parser()
print(sorted(name for name in ("torch", "numba", "cv2", "av", "onnxruntime") if name in sys.modules))
"""


def test_help_and_option_parsing_load_no_framework_and_no_jit():
    """Issue 18: `camstream run --help` took ~2 s (torch, Numba, OpenCV imported to list choices); the parser
    now reads only the framework-free catalog (measured 0.14 s)."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", HELP_IMPORTS], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _module_files() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its __init__.py)."""
    root = Path(camstream.__file__).parent
    files = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def _imported_modules(path: Path, package: str, modules: dict[str, Path]) -> set[str]:
    """The package's modules `path` imports anywhere in it (at the top, in functions, for type checking)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base
                                                                                               else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def test_the_package_imports_downward_only_with_no_circle():
    """The file-level import graph (every import, lazy and type-checking ones too) has no cycle: each module
    stands above what it uses, so a change has one room (docs/architecture.md draws the floors)."""
    modules = _module_files()
    graph = {name: _imported_modules(path, name if path.name == "__init__.py" else name.rpartition(".")[0],
                                     modules) - {name}
             for name, path in modules.items()}
    assert graph["camstream.stream.pipeline"] >= {"camstream.backends"}  # the reading itself sees imports
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for used in sorted(graph[name]):
            if state.get(used) == 1:
                cycle = path[path.index(used):] + [used] if used in path else [name, used]
                raise AssertionError("an import circle: " + " -> ".join(cycle))
            if used not in state:
                visit(used, [*path, used])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
