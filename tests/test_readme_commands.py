"""Every `camstream` command line in the README runs (issue 28: `camstream bench --quick` crashed and no test saw it).

Each line of the README's bash blocks that calls camstream is either run here — its placeholder files swapped for
small real ones, and its work made small (`--max-frames`, `--limit`, `--smoke`) — or named in `COVERED_ELSEWHERE`
with the test that runs it (a camera, a window, a network camera, Ray). A README line in neither fails the test,
so a new command cannot land unseen. A run passes when it exits 0 with no traceback.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch

from tests.conftest import REPO, SHARED, shared_file

README = (REPO / "README.md").read_text()

# Lines that need a device or a service this test cannot stand in for, and the tests that do run them.
COVERED_ELSEWHERE = {
    "camstream run --source rtsp://user:pass@cam.local/stream --sink web": "test_rtsp.py, test_dashboard.py",
    "camstream run --source 0 --sink window --reuse-cam": "test_window.py (Xvfb); a camera is not here",
    "camstream run --source a.mp4 --source rtsp://cam2/live --sources more.txt --sink file": "test_streams.py",
    "camstream fleet --sources cameras.txt --out fleet-out": "test_fleet.py (Ray)",
    "camstream run --model vit_b_16 --weights vit_b_16.pth --method vit-recipro --reuse-cam": "test_vit.py",
    "camstream run --clip-model my_clip_model.pt --clip-steps 16": "test_temporal.py",
}


def readme_commands() -> list[str]:
    """The camstream command lines of the README's bash blocks (comments cut, `pip … &&` prefixes dropped)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith("camstream ") or part == "camstream":
                    commands.append(re.sub(r"\s+", " ", part))
    return list(dict.fromkeys(commands))


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory, demo_clip, chelsea_rgb) -> dict[str, str]:
    """Small real files for the README's placeholder names."""
    folder = tmp_path_factory.mktemp("readme")
    photo = folder / "cat.png"
    cv2.imwrite(str(photo), cv2.cvtColor(chelsea_rgb, cv2.COLOR_RGB2BGR))
    images = folder / "images"
    images.mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(images / name), cv2.cvtColor(chelsea_rgb, cv2.COLOR_RGB2BGR))
    import torchvision

    torch.save(torchvision.models.resnet18(num_classes=1000), folder / "my_model.pt")
    torch.save(torchvision.models.resnet18(num_classes=1000).state_dict(), folder / "fine_tuned.pt")
    detector = torchvision.models.get_model("fasterrcnn_mobilenet_v3_large_320_fpn", weights=None,
                                            weights_backbone=None, num_classes=91)
    torch.save(detector.state_dict(), folder / "coco.pth")
    faces = shared_file("images", "faces", "test_kit_with_rose.jpg")
    clip = str(demo_clip)
    return {"street.mp4": clip, "clip.mp4": clip, "dashcam.mp4": clip, "cat.png": str(photo),
            "photo.jpg": str(photo), "group.jpg": str(faces), "DIR": str(images),
            "my_model.pt": str(folder / "my_model.pt"), "fine_tuned.pt": str(folder / "fine_tuned.pt"),
            "coco.pth": str(folder / "coco.pth"), "folder": str(folder)}


def runnable(command: str, files: dict[str, str], out: Path) -> list[str]:
    """The README's `command` with stand-ins for its placeholders, outputs under `out` and its work made small."""
    words = shlex.split(command)[1:]
    words = [files.get(word, str(SHARED) + word[len("../shared"):] if word.startswith("../shared") else word)
             for word in words]
    if "--source" in words and words[words.index("--source") + 1] == "0":  # a camera: the demo clip stands in
        words[words.index("--source") + 1] = files["clip.mp4"]
    for flag in ("--out",):
        if flag in words:
            words[words.index(flag) + 1] = str(out / Path(words[words.index(flag) + 1]).name)
    verb = words[0] if words else "run"
    if verb == "run":
        words += ["--max-frames", "6"] + ([] if "--out" in words else ["--out", str(out / "run")])
    elif verb == "eval":
        words += ["--limit", "2", "--video", "none", "--steps", "2", "--no-plots", "--thresholds", "dynamic"]
    elif verb == "bench":
        words += ["--smoke"]
    elif verb == "explain" and "--out" not in words:
        words += ["--out", str(out / "overlay.png")]
    return words


COMMANDS = readme_commands()


def test_the_readme_has_commands_and_each_is_run_or_covered():
    assert len(COMMANDS) >= 20, COMMANDS
    stale = set(COVERED_ELSEWHERE) - set(COMMANDS)
    assert not stale, f"COVERED_ELSEWHERE names lines no longer in the README: {stale}"


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in COMMANDS if c not in COVERED_ELSEWHERE])
def test_a_readme_command_runs(command, stand_ins, tmp_path):
    # the exported graph of `camstream export` is what the README runs next: both share one folder
    out = Path(stand_ins["folder"])
    words = [str(out / w) if w == "lite0-gradcam.onnx" else w for w in runnable(command, stand_ins, out)]
    if "--model" in words and words[words.index("--model") + 1].endswith(".onnx") and not (
            out / "lite0-gradcam.onnx").exists():
        export = runnable("camstream export --model efficientnet_lite0 --method gradcam --out lite0-gradcam.onnx",
                          stand_ins, out)
        assert subprocess.run([sys.executable, "-m", "camstream", *export], capture_output=True,
                              timeout=600).returncode == 0
    if "yolov8n.pt" in words:
        pytest.importorskip("ultralytics", reason="the yolo extra runs YOLO files")
        from ultralytics.nn.tasks import DetectionModel

        torch.save({"model": DetectionModel("yolov8n.yaml", nc=80, verbose=False)}, out / "yolov8n.pt")
        words = [str(out / "yolov8n.pt") if w == "yolov8n.pt" else w for w in words]
    result = subprocess.run([sys.executable, "-m", "camstream", *words], capture_output=True, text=True,
                            timeout=900, cwd=tmp_path)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 0, (words, result.stderr[-3000:])
