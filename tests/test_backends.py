"""The explanation inside one exported graph, run by ONNX Runtime and OpenVINO, equals the torch methods' maps;
the pipeline and `camstream explain` run on any backend; bad graphs, missing extras and unknown backends are one
line and exit 2."""

from __future__ import annotations

import json
import sys
import warnings

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from camstream.backends import BackendRequest, make_backend
from camstream.backends.export import analyse_head, export_model
from camstream.catalog import EXPORTABLE_METHODS
from camstream.errors import CamstreamError, ModelError
from camstream.explain import HookedModel, make_method
from camstream.model.load import load_model
from camstream.model.preprocess import Preprocessor, resize_to_rgb

from .cli import assert_one_line_error, camstream, one_stream
from .conftest import shared_file

pytest.importorskip("onnxruntime", reason="the onnx extra (in the test extra) provides ONNX Runtime")
pytest.importorskip("openvino", reason="the openvino extra (in the test extra) provides OpenVINO")

MODELS = ("efficientnet_lite0", "mobilenet_v2", "resnet18")


def shared_photos(count: int = 3) -> list[np.ndarray]:
    folder = shared_file("images", "indoor_boxes", "images")
    return [cv2.imread(str(path)) for path in sorted(folder.glob("*.jpg"))[:count]]


def seeded_model(name: str):
    torch.manual_seed(0)  # the same random weights for the torch reference and the export (pretrained for lite0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(name)


@pytest.fixture(scope="module")
def graphs(tmp_path_factory) -> dict[tuple[str, str], str]:
    """Every exportable method of every model, exported once for the module."""
    folder = tmp_path_factory.mktemp("graphs")
    written = {}
    for model in MODELS:
        for method in EXPORTABLE_METHODS:
            torch.manual_seed(0)
            written[model, method] = export_model(str(folder / f"{model}-{method}.onnx"), model, method)["out"]
    return written


@pytest.mark.parametrize("model", MODELS)
def test_runtime_maps_equal_the_torch_maps_on_the_shared_photos(model, graphs):
    spec = seeded_model(model)
    frames = [resize_to_rgb(photo, spec.input_size) for photo in shared_photos()]
    batch = Preprocessor(spec, len(frames))(frames).clone()
    with HookedModel(spec.module, (3, *spec.input_size)) as hooked:
        assert hooked.freeze(batch.clone())  # the reference is what camstream run uses: the frozen model
        for method in EXPORTABLE_METHODS:
            expected = make_method(method, hooked)(batch.clone())
            for backend in ("onnxruntime", "openvino"):
                found = make_backend(BackendRequest(backend, graphs[model, method])).explain(frames)
                difference = float(np.abs(np.asarray(found.maps) - expected.maps.numpy()).max())
                assert difference <= 1e-4, f"{model} {method} on {backend}: max |Δ| {difference:.2e}"
                np.testing.assert_array_equal(found.class_ids, expected.class_ids.numpy())
                np.testing.assert_allclose(found.scores, expected.scores.numpy(), atol=1e-5, rtol=1e-4)


def test_same_padding_is_exported_as_constants_the_runtime_can_fold(graphs):
    """timm's Conv2dSame reads its input's size at run time; traced as it is, each Pad's amounts were computed
    by shape arithmetic in the graph (and ONNX Runtime could not fold the Pad into its convolution)."""
    onnx = pytest.importorskip("onnx")
    graph = onnx.load(graphs["efficientnet_lite0", "gradcam"]).graph
    constants = {entry.name for entry in graph.initializer}
    for node in graph.node:  # in topological order: what only constants feed folds to a constant (not Shape)
        if node.op_type != "Shape" and all(name in constants for name in node.input):
            constants.update(node.output)
    pads = [node for node in graph.node if node.op_type == "Pad"]
    assert len(pads) == 5  # the stem and the four strided depthwise convolutions of EfficientNet-Lite0
    assert all(node.input[1] in constants for node in pads), [node.input[1] for node in pads]


def test_the_float_baseline_of_the_bench_is_the_same_model_fed_by_numpy(tmp_path, demo_clip):
    from camstream.backends.export import export_plain
    from camstream.backends.graph import OnnxRuntimeSession
    from camstream.bench.backends import numpy_normalised
    from camstream.bench.explainers import real_frames

    frames = real_frames(str(demo_clip), 2, (224, 224))
    spec = seeded_model("efficientnet_lite0")
    plain = OnnxRuntimeSession(export_plain(str(tmp_path / "plain.onnx")))
    by_hand = OnnxRuntimeSession(export_plain(str(tmp_path / "float.onnx"), layout="normalised"))
    logits = plain(np.stack(frames))[0]
    expected = by_hand(numpy_normalised(frames, spec.mean, spec.std))[0]
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-4)
    reference = Preprocessor(spec, 2)(frames).numpy()
    np.testing.assert_allclose(numpy_normalised(frames, spec.mean, spec.std), reference, atol=1e-6)


def test_a_given_class_is_explained_inside_the_graph(graphs):
    spec = seeded_model("efficientnet_lite0")
    frames = [resize_to_rgb(photo, spec.input_size) for photo in shared_photos(2)]
    backend = make_backend(BackendRequest("onnxruntime", graphs["efficientnet_lite0", "gradcam"]))
    top = backend.explain(frames)
    chosen = backend.explain(frames, class_id=417)
    assert chosen.class_ids.tolist() == [417, 417]
    np.testing.assert_allclose(chosen.scores, torch.softmax(torch.from_numpy(top.logits), 1)[:, 417].numpy(),
                               rtol=1e-5)
    assert not np.allclose(chosen.maps, top.maps)  # another class, another map
    batch = Preprocessor(spec, len(frames))(frames).clone()
    with HookedModel(spec.module, (3, *spec.input_size)) as hooked:
        hooked.freeze(batch.clone())
        expected = make_method("gradcam", hooked)(batch, 417)
    assert float(np.abs(chosen.maps - expected.maps.numpy()).max()) <= 1e-4


def test_a_head_that_is_not_gap_and_linear_is_refused_naming_the_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
    with HookedModel(model, (3, 8, 8), "1") as hooked, pytest.raises(ModelError, match="after '1'"):
        analyse_head(hooked)


def test_run_on_onnxruntime_writes_the_same_kind_of_video_and_report(tmp_path, demo_clip, graphs):
    result = camstream("run", "--model", graphs["efficientnet_lite0", "gradcam"], "--out", tmp_path,
                       "--max-frames", "12")
    assert result.returncode == 0, result.stderr
    report = one_stream(json.loads((tmp_path / "report.json").read_text()))
    assert report["backend"]["name"] == "onnxruntime" and report["method"] == "gradcam"
    assert report["layer"] == "bn2" and report["model"] == "efficientnet_lite0"
    assert report["frames_out"] == 12 and report["frames_explained"] == 12
    assert (tmp_path / "overlay.mp4").stat().st_size > 0


def test_explain_on_openvino_names_the_balloon(tmp_path, graphs):
    photo = shared_file("images", "balloon", "train", "10464445726_6f1e3bbe6a_k.jpg")
    result = camstream("explain", photo, "--model", graphs["efficientnet_lite0", "gradcam"], "--backend",
                       "openvino", "--out", tmp_path / "overlay.png", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["backend"] == "openvino" and summary["class_id"] == 417
    assert cv2.imread(str(tmp_path / "overlay.png")) is not None


def test_a_file_that_is_not_an_exported_graph_is_one_line(tmp_path):
    garbage = tmp_path / "model.onnx"
    garbage.write_bytes(b"not a graph at all")
    assert_one_line_error(camstream("run", "--model", garbage, "--out", tmp_path / "out"), "not a readable ONNX")
    assert not (tmp_path / "out").exists()
    # on OpenVINO too, in camstream's words and before OpenVINO tries to compile it
    on_openvino = camstream("run", "--model", garbage, "--backend", "openvino", "--out", tmp_path / "out")
    assert_one_line_error(on_openvino, "not a readable ONNX file")
    assert "Exception from src" not in on_openvino.stderr


def test_a_method_that_cannot_be_exported_says_which_can(tmp_path):
    from camstream.backends.export import export_model

    with pytest.raises(CamstreamError, match=r"'vit-rollout' cannot be exported \(choose from gradcam, "):
        export_model(str(tmp_path / "x.onnx"), "resnet18", "vit-rollout")


def test_an_unknown_backend_is_one_line():
    assert_one_line_error(camstream("run", "--backend", "tensorrt"), "invalid choice: 'tensorrt'")


def test_a_graph_on_the_torch_backend_or_with_another_method_is_one_line(graphs):
    graph = graphs["efficientnet_lite0", "gradcam"]
    assert_one_line_error(camstream("run", "--model", graph, "--backend", "torch"), "--backend onnxruntime")
    assert_one_line_error(camstream("run", "--model", graph, "--method", "recipro"), "export it again")


def test_a_missing_extra_names_it(monkeypatch, graphs):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what an install without the extra looks like
    with pytest.raises(CamstreamError, match=r"pip install 'camstream\[onnx\]'"):
        make_backend(BackendRequest("onnxruntime", graphs["efficientnet_lite0", "gradcam"]))


TORCH_FREE_RUN = """
import json, sys
from camstream.cli import main
rc = main(["run", "--model", sys.argv[1], "--out", sys.argv[2], "--quiet", "--max-batch", "1", "--threads", "1"])
print(json.dumps({"rc": rc, "torch": "torch" in sys.modules, "onnx": "onnx" in sys.modules}))
"""


def test_a_run_on_an_exported_graph_imports_no_torch(tmp_path, demo_clip, graphs):
    import subprocess

    result = subprocess.run([sys.executable, "-c", TORCH_FREE_RUN, graphs["efficientnet_lite0", "gradcam"],
                             str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == {"rc": 0, "torch": False, "onnx": False}
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["total"]["frames_out"] == 250 and report["system"]["torch"] is None
    # measured 319–324 MB here (the torch backend: ~1,080 MB); the bound catches torch or a second model copy
    assert report["total"]["rss_peak_mb"] < 400, report["total"]


def test_int8_export_is_smaller_runs_and_says_how_it_agrees(tmp_path):
    import re
    import shutil

    folder = tmp_path / "calibration"
    folder.mkdir()
    for photo in sorted(shared_file("images", "indoor_boxes", "images").glob("*.jpg"))[:6]:
        shutil.copy(photo, folder)
    result = camstream("export", "--out", tmp_path / "lite0.onnx", "--int8", folder)
    assert result.returncode == 0, result.stderr
    found = re.search(r"top-1 agreement ([\d.]+), CAM correlation mean ([-\d.]+|None).* on 3 images", result.stdout)
    assert found, result.stdout
    assert 0.0 <= float(found.group(1)) <= 1.0
    quantised = tmp_path / "lite0-int8.onnx"
    assert quantised.stat().st_size < 0.7 * (tmp_path / "lite0.onnx").stat().st_size
    backend = make_backend(BackendRequest("onnxruntime", str(quantised)))  # the settings travel into the int8 graph too
    assert backend.method == "gradcam" and backend.layer == "bn2"
    frames = [np.zeros((224, 224, 3), np.uint8)] * 2
    explanation = backend.explain(frames)
    assert explanation.maps.shape == (2, 7, 7) and 0.0 <= float(explanation.maps.min()) <= 1.0


def test_int8_needs_a_folder_of_images(tmp_path):
    assert_one_line_error(camstream("export", "--out", tmp_path / "m.onnx", "--int8", tmp_path / "none"),
                          "no such folder")


def test_eval_on_a_runtime_backend_scores_the_same_maps_as_torch(tmp_path):
    """camstream eval --backend onnxruntime: the own method's maps come from the exported graph, fed uint8
    frames; they equal torch's, so every figure agrees (the scoring model is torch's in both)."""
    from camstream.eval.suite import EvalPlan, run_eval

    data = tmp_path / "photos"
    data.mkdir()
    for photo in sorted(shared_file("images", "balloon", "train").glob("*.jpg"))[:2]:
        (data / photo.name).write_bytes(photo.read_bytes())
    figures = {}
    for backend in ("torch", "onnxruntime"):
        plan = EvalPlan(methods=["gradcam"], thresholds=["dynamic"], backend=backend, steps=4, video=None,
                        plots=False)
        results = run_eval(str(data), str(tmp_path / backend), plan, progress=lambda _message: None)
        assert results["backend"] == backend
        figures[backend] = results["methods"]["gradcam"]["variants"]["none"]
    for metric, value in figures["torch"].items():
        # max-sensitivity's noisy copies reach the graph as uint8 frames (±0.5/255 of rounding on ±0.02 of noise)
        tolerance = {"rel": 1e-2} if metric == "max_sensitivity" else {"abs": 2e-3}
        assert figures["onnxruntime"][metric] == pytest.approx(value, **tolerance), metric


NO_TORCH_RUN = """
import sys
for name in ("torch", "torchvision", "timm"):
    sys.modules[name] = None  # an install without the torch extra
from camstream.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("command", [["run"], ["export", "--out", "x.onnx"], ["eval", "--data", "."], ["bench"]])
def test_without_the_torch_extra_a_torch_command_names_the_extra(tmp_path, command):
    import subprocess

    result = subprocess.run([sys.executable, "-c", NO_TORCH_RUN, *command], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert_one_line_error(result, "pip install 'camstream[torch]'")
    assert list(tmp_path.iterdir()) == []


def test_the_frozen_graphs_are_cached_between_runs_and_a_damaged_entry_is_traced_again(tmp_path, monkeypatch,
                                                                                        chelsea_rgb):
    from camstream.backends.torch_backend import TorchBackend
    from camstream.explain import freezing
    from camstream.model.preprocess import resize_to_rgb

    monkeypatch.setenv("CAMSTREAM_CACHE", str(tmp_path))
    frame = resize_to_rgb(np.ascontiguousarray(chelsea_rgb[..., ::-1]), (224, 224))
    first = TorchBackend("efficientnet_lite0", max_batch=2)
    expected = np.array(first.explain([frame]).maps)
    first.close()
    cached = sorted(p.name for p in (tmp_path / "traces").glob("*.pt"))
    assert len(cached) == 2 and cached[0].endswith(".head.pt") and cached[1].endswith(".logits.pt")
    for record in (tmp_path / "traces").glob("*.start.json"):
        record.unlink()  # this test is about the graphs: no start from the record (next test)

    def no_tracing(*_args):
        raise AssertionError("traced although the graphs were cached")

    with monkeypatch.context() as patched:
        patched.setattr(freezing, "trace", no_tracing)
        second = TorchBackend("efficientnet_lite0", max_batch=2)
    assert second.frozen
    assert np.abs(np.array(second.explain([frame]).maps) - expected).max() < 1e-5
    second.close()
    (tmp_path / "traces" / cached[1]).write_bytes(b"not a graph")
    third = TorchBackend("efficientnet_lite0", max_batch=2)
    assert third.frozen and (tmp_path / "traces" / cached[1]).stat().st_size > 1000  # traced and written again
    third.close()


def test_a_recorded_start_runs_the_cached_graphs_without_building_the_model(tmp_path, monkeypatch, chelsea_rgb):
    from camstream.backends.torch_backend import TorchBackend
    from camstream.explain.frozen import FrozenHookedModel
    from camstream.model.preprocess import resize_to_rgb

    monkeypatch.setenv("CAMSTREAM_CACHE", str(tmp_path))
    frame = resize_to_rgb(np.ascontiguousarray(chelsea_rgb[..., ::-1]), (224, 224))
    first = TorchBackend("efficientnet_lite0", max_batch=2)
    expected = first.explain([frame])
    first.set_method("cam")
    expected_cam = first.explain([frame])
    first.close()
    assert len(list((tmp_path / "traces").glob("*.start.json"))) == 1

    def no_model(*_args, **_kwargs):
        raise AssertionError("the model was loaded although its start was recorded")

    with monkeypatch.context() as patched:
        patched.setattr("camstream.backends.torch_backend.load_model", no_model)
        second = TorchBackend("efficientnet_lite0", max_batch=2)
        found = second.explain([frame])
    assert isinstance(second.hooked, FrozenHookedModel) and not second.hooked.built
    assert (second.model_name, second.input_size, second.labels) == ("efficientnet_lite0", (224, 224),
                                                                     first.labels)
    assert np.abs(np.asarray(found.maps) - np.asarray(expected.maps)).max() < 1e-5
    np.testing.assert_array_equal(found.class_ids, expected.class_ids)
    second.set_method("cam")  # CAM reads the classifier's weights: the model is built, once, then
    cam = second.explain([frame])
    assert second.hooked.built
    assert np.abs(np.asarray(cam.maps) - np.asarray(expected_cam.maps)).max() < 1e-5
    second.close()
    other_layer = TorchBackend("efficientnet_lite0", max_batch=2, layer="blocks.5")  # another key: no record
    assert not isinstance(other_layer.hooked, FrozenHookedModel) and other_layer.layer == "blocks.5"
    other_layer.close()


RECORDED_START = """
import json, sys
from camstream.cli import main
rc = main(["run", "--out", sys.argv[1], "--quiet", "--sink", "null", "--max-frames", "4"])
print(json.dumps({"rc": rc, "zoo": sorted({"timm", "torchvision"} & set(sys.modules))}))
"""


def test_a_run_whose_frozen_graphs_are_cached_imports_no_model_zoo(tmp_path):
    import subprocess

    environment = {**__import__("os").environ, "CAMSTREAM_CACHE": str(tmp_path / "cache")}
    seen = []
    for run in ("cold", "warm"):
        result = subprocess.run([sys.executable, "-c", RECORDED_START, str(tmp_path / run)], capture_output=True,
                                text=True, timeout=300, env=environment)
        assert result.returncode == 0, result.stderr
        seen.append(json.loads(result.stdout.strip().splitlines()[-1]))
    assert seen == [{"rc": 0, "zoo": ["timm", "torchvision"]}, {"rc": 0, "zoo": []}]
    reports = [json.loads((tmp_path / run / "report.json").read_text()) for run in ("cold", "warm")]
    assert reports[0]["streams"][0]["frames_out"] == reports[1]["streams"][0]["frames_out"] == 4
    for key in ("model", "layer", "method", "model_input", "frozen"):
        assert reports[0][key] == reports[1][key], key
    assert reports[0]["streams"][0]["top_classes"] == reports[1]["streams"][0]["top_classes"]


def test_random_weights_are_never_cached_as_a_frozen_graph():
    from camstream.backends.torch_backend import trace_cache

    assert trace_cache("resnet18", None, "layer4", torch.zeros(1, 3, 224, 224), "cpu") is None  # new each run
    assert trace_cache("efficientnet_lite0", None, "bn2", torch.zeros(1, 3, 224, 224), "cpu") is not None


def test_a_run_on_a_cached_export_loads_no_torch_and_numba_only_after_its_first_frame(graphs, tmp_path, demo_clip,
                                                                                      monkeypatch):
    import shutil
    import subprocess
    from pathlib import Path

    from camstream.backends.factory import exported_path

    monkeypatch.setenv("CAMSTREAM_CACHE", str(tmp_path / "cache"))
    target = Path(exported_path("efficientnet_lite0", None, None, None))  # where a run will look for the graph
    target.parent.mkdir(parents=True)
    shutil.copy(graphs["efficientnet_lite0", "gradcam"], target)
    probe = ("import sys; from camstream.stream.pipeline import Pipeline, PipelineConfig; "
             f"p = Pipeline(PipelineConfig(source={str(demo_clip)!r}, backend='onnxruntime', sinks=('null',), "
             f"max_frames=4, out_dir={str(tmp_path / 'out')!r})); p.run(); "
             "print(p.report['total']['frames_out'], 'torch' in sys.modules, "
             "p.report['kernels_ready_s'] > p.report['streams'][0]['time_to_first_frame_s'])")
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    # torch (and timm) were imported for nothing; Numba (~0.7 s) was loaded before the first frame
    assert ran.stdout.split() == ["4", "False", "True"], ran.stderr
