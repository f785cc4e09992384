"""The names a user can choose from, without importing any framework: `--help` and a run on an exported graph
(which needs no torch) read them here. The modules that implement them are checked against these lists
(`tests/test_structure.py`)."""

from __future__ import annotations

DEFAULT_MODEL = "efficientnet_lite0"
TORCHVISION_MODELS = ("mobilenet_v2", "resnet18", "vgg16", "efficientnet_b0", "vit_b_16")
TIMM_MODELS = {"deit_tiny": "deit_tiny_patch16_224"}  # camstream name → timm architecture
MODEL_NAMES = (DEFAULT_MODEL, *TORCHVISION_MODELS, *TIMM_MODELS)

CNN_METHODS = ("gradcam", "gradcam++", "cam", "recipro")  # the first is the default
VIT_METHODS = ("vit-recipro", "vit-rollout")
IMAGE_METHODS = (*CNN_METHODS, *VIT_METHODS)  # what a video stream can explain with
CLIP_METHODS = ("step-occlusion", "step-gradient")
EXPORTABLE_METHODS = CNN_METHODS  # inside one exported graph (`camstream export`)

BACKENDS = ("torch", "onnxruntime", "openvino")
EXPORT_METADATA_PREFIX = "camstream."  # the keys an exported graph's settings are stored under
