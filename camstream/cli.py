"""The `camstream` command: `explain` one image, `run` the live pipeline."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
import warnings
from typing import NoReturn

from camstream import __version__
from camstream.errors import CamstreamError, OutputError, StageError, StreamsFailed
from camstream.progress import configure as configure_progress
from camstream.progress import say, step, timed_progress
from camstream.redaction import redact, remember_secrets


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    from camstream.catalog import BACKENDS, DEFAULT_MODEL, DEVICES, IMAGE_METHODS, MODEL_NAMES
    from camstream.threshold_spec import parse_threshold

    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"{', '.join(MODEL_NAMES)}, a pickled nn.Module file (torch.save(model); a "
                             "TorchScript file is refused: its layers cannot be hooked), or a graph written by "
                             f"camstream export (.onnx) (default {DEFAULT_MODEL}, ImageNet weights bundled)")
    parser.add_argument("--backend", choices=BACKENDS,
                        help="runtime that explains: torch (any model and method), onnxruntime or openvino (the "
                             "explanation inside one exported graph; a model name is exported once to "
                             "~/.cache/camstream) (default: torch, or onnxruntime for a .onnx model)")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="where the model runs: cpu, cuda (an NVIDIA GPU: torch, or onnxruntime-gpu), or auto "
                             "(cuda where the backend sees one, else cpu) (default auto)")
    _add_model_card_options(parser)
    parser.add_argument("--weights", metavar="FILE", help="state-dict file for the model (torchvision models "
                        "without it get random weights: fine for speed tests only)")
    parser.add_argument("--layer", metavar="NAME", help="target layer (default: the last spatial feature layer; "
                        "for a ViT the tokens entering its last block)")
    parser.add_argument("--method", choices=IMAGE_METHODS,
                        help="explanation method (default: gradcam for CNNs, vit-recipro for vision transformers "
                             "such as vit_b_16 and deit_tiny; vit-rollout is the fast ViT choice; box-gradcam for "
                             "detectors, one map per box; eigencam is their gradient-free, class-agnostic choice)")
    parser.add_argument("--threshold", default="dynamic", type=parse_threshold, metavar="P|dynamic|faithful[:R]|none",
                        help="show the top P %% of the map, the seed paper's dynamic threshold, the smallest top "
                             "P %% whose region alone keeps R of the class score (faithful, R 0.95 by default: the "
                             "model is asked, one batched forward of 7 candidates), or all of it (default dynamic: "
                             "min coverage 5 %%, max threshold 0.5, step 0.05)")


def _add_model_card_options(parser: argparse.ArgumentParser) -> None:
    """The options that say what a model is fed and what its classes are called (they win over its model card)."""
    from camstream.model.card import RESIZE_MODES

    parser.add_argument("--labels", metavar="FILE", help="class names, one per line (line N names class N), in "
                        "place of the model's own (ImageNet's for the bundled models)")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                        help="the model's input height and width (default: its model card's, else 224 224)")
    parser.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"),
                        help="per-channel mean of RGB pixels in [0, 1] (default: the model card's, else ImageNet's)")
    parser.add_argument("--std", type=float, nargs=3, metavar=("R", "G", "B"),
                        help="per-channel standard deviation, as --mean")
    parser.add_argument("--resize", choices=RESIZE_MODES,
                        help="how a frame becomes the model input: stretch (to the input size), letterbox (keep the "
                             "aspect ratio, pad with black) or crop (keep the aspect ratio, cut the centre out) "
                             "(default: the model card's, else stretch). A model card is a sidecar JSON beside the "
                             "model file (MODEL.camstream.json): see the README, 'Your own model'")
    parser.add_argument("--score-threshold", type=float, metavar="S",
                        help="detectors: keep boxes scoring at least S, 0..1 (default: the model card's, 0.5)")
    parser.add_argument("--boxes", type=int, metavar="N", dest="max_boxes",
                        help="detectors: explain the N best boxes of each frame, each with its own map (default 5); "
                             "--class-id keeps one class")


class _OneLineErrorParser(argparse.ArgumentParser):
    """argparse with its usage errors as one line (`camstream: error: …`) and exit code 2, like every other
    bad input; `--help` still prints the whole usage."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("camstream").strip()
        where = f"{command}: " if command else ""
        self.exit(2, redact(f"camstream: error: {where}{message} (see {self.prog} --help)\n"))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; it reads the framework-free catalog only, so --help loads no torch, JIT or OpenCV."""
    parser = _OneLineErrorParser(prog="camstream", description="Live class-activation heatmaps over video: "
                                     "see why an image model decides what it decides.")
    parser.add_argument("--version", action="version", version=f"camstream {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_explain_command(commands)
    _add_run_command(commands)
    _add_export_command(commands)
    _add_fleet_command(commands)
    _add_bench_command(commands)
    _add_eval_command(commands)
    _add_sanity_command(commands)
    _add_inspect_command(commands)
    for command in commands.choices.values():
        command.add_argument("-q", "--quiet", action="store_true", help="say only results, warnings and errors on "
                             "stderr: no progress lines, no live status line")
        command.add_argument("-v", "--verbose", action="store_true", help="also say debug details on stderr "
                             "(dropped dashboard clients, retries)")
    return parser


def _add_explain_command(commands: argparse._SubParsersAction) -> None:
    """`camstream explain`'s options."""
    explain = commands.add_parser("explain", help="explain one image and write an overlay PNG",
                                  description="Explain one image: top-1 class (or --class-id) and its heatmap "
                                              "composited over the image, written at the input's size.")
    explain.add_argument("image", help="image file (PNG, JPEG, ...)")
    _add_model_options(explain)
    explain.add_argument("--class-id", type=int, metavar="N", help="explain class N instead of the top-1 class")
    explain.add_argument("--out", required=True, metavar="OVERLAY.png", help="where to write the overlay")
    explain.add_argument("--json", action="store_true", help="print one JSON object instead of a sentence")


def _add_run_command(commands: argparse._SubParsersAction) -> None:
    """`camstream run`'s options."""
    from camstream.catalog import CLIP_METHODS, COLORMAPS, HUD_PLACES, SINKS

    run = commands.add_parser("run", help="explain a video, stream or camera live (the default command)",
                              description="Explain every frame of a video file, RTSP/HTTP stream or camera: "
                                          "capture → batched inference → heatmap overlay → sinks, with per-stage "
                                          "latency, fps and memory shown live and written to report.json. With "
                                          "no options it runs the bundled demo clip and writes "
                                          "camstream-out/overlay.mp4 and camstream-out/report.json.")
    run.add_argument("--source", metavar="PATH|URL|INDEX", action="append",
                     help="video file, rtsp:// or http(s):// URL, or camera index (default: bundled demo clip); "
                          "repeat for several streams in one process: frames of all are batched together "
                          "fairly, and each stream writes OUT/<n>-<name>/")
    run.add_argument("--sources", metavar="FILE", help="a file listing sources, one per line (# comments)")
    run.add_argument("--sink", action="append", choices=SINKS, metavar="SINK",
                     help="file (OUT/overlay.mp4), web (a live dashboard in the browser: every stream's video, "
                          "charts of fps, latency and memory, the last classes, and controls that change the "
                          "running pipeline), mjpeg (the bare MJPEG stream), window, null; repeat for several "
                          "(default file)")
    run.add_argument("--out", default="camstream-out", metavar="DIR",
                     help="folder for overlay.mp4 and report.json (default camstream-out)")
    _add_model_options(run)
    run.add_argument("--class-id", type=int, metavar="N", help="explain class N instead of each frame's top-1")
    policy = run.add_mutually_exclusive_group()
    policy.add_argument("--lossless", dest="policy", action="store_const", const="lossless",
                        help="every input frame reaches the output; capture waits (default for files)")
    policy.add_argument("--live", dest="policy", action="store_const", const="live",
                        help="drop the oldest unread frame when behind (default for cameras and streams; a file "
                             "is then played at its own speed, like a camera)")
    run.add_argument("--max-frames", type=int, metavar="N", help="stop after N input frames")
    run.add_argument("--max-outage", type=float, metavar="S",
                     help="a stream that drops is reconnected with back-off; give up (exit 3) after S seconds "
                          "without frames (default: keep trying)")
    run.add_argument("--max-batch", type=int, default=4, metavar="N", help="frames per inference batch (default 4)")
    run.add_argument("--max-wait-ms", type=float, default=20.0, metavar="MS",
                     help="how long inference waits to fill a batch (default 20)")
    run.add_argument("--smooth", type=float, default=0.0, metavar="ALPHA",
                     help="temporal smoothing of heatmaps, EMA weight of the past in [0, 1) (default 0: off); a "
                          "detector's boxes each on their own, a box continuing the last frame's box of its label "
                          "that it overlaps by IoU >= 0.5")
    run.add_argument("--reuse-cam", action="store_true",
                     help="explain only the newest frame of each batch and overlay the newest heatmap on every "
                          "frame: display keeps the source rate, heatmaps refresh at inference rate")
    run.add_argument("--target-fps", type=float, default=60.0, metavar="FPS",
                     help="pace window/web/mjpeg output to at most FPS (default 60; 0: unpaced); file and null sinks "
                          "are never paced")
    run.add_argument("--clip-model", metavar="FILE",
                     help="a temporal model too (pickled nn.Module with features(clips) and classify(features), "
                          "e.g. camstream.explain.temporal.ClipClassifier): it classifies each stream's last "
                          "--clip-steps "
                          "explained frames, fed the same preprocessed frames as the image model, and the HUD's "
                          "bottom strip shows which steps decided (white frame: "
                          "kept by --threshold)")
    run.add_argument("--faithful-every", type=int, default=8, metavar="N",
                     help="--threshold faithful: search on every N-th explained frame of a stream, the frames between "
                          "reuse its choice (default 8; 1: every frame, about 7 forwards more each)")
    run.add_argument("--clip-steps", type=int, default=16, metavar="N", help="frames the clip model sees (default 16)")
    run.add_argument("--clip-method", default="step-occlusion", choices=CLIP_METHODS,
                     help="time-step importance: masking each step, or gradient × feature (default step-occlusion)")
    run.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's choice)")
    run.add_argument("--alpha", type=float, default=0.45, help="heatmap opacity in [0, 1] (default 0.45)")
    run.add_argument("--colormap", default="jet", choices=sorted(COLORMAPS), help="heatmap colours (default jet)")
    run.add_argument("--hud", choices=HUD_PLACES, default="top",
                     help="where the text overlay goes: top, bottom or off; it is sized to the frame and never "
                          "covers more than a tenth of it (default top)")
    run.add_argument("--no-hud", dest="hud", action="store_const", const="off", help="same as --hud off")
    run.add_argument("--no-freeze", dest="freeze", action="store_false",
                     help="run the model eagerly instead of traced + frozen (slower; for models that trace wrong)")
    run.add_argument("--bind", default="127.0.0.1", metavar="ADDR",
                     help="web/mjpeg sink address (default 127.0.0.1: this machine only)")
    run.add_argument("--port", type=int, default=8080,
                     help="web/mjpeg sink port (default 8080; mjpeg: one port per stream from it; 0: any free port)")
    run.add_argument("--loop", action="store_true",
                     help="play a file source again from the start at its end, until Ctrl-C or --max-frames "
                          "(frames stay in order and the output's timeline runs on; cameras and streams are "
                          "unaffected)")
    run.add_argument("--keep-serving", action="store_true",
                     help="web sink: when the run ends, keep the dashboard up with its last frame and figures "
                          "until Ctrl-C")
    run.add_argument("--token", metavar="SECRET",
                     help="web/mjpeg sink: require ?token=SECRET (or a Bearer header) on every request")
    run.add_argument("--status-every", type=float, metavar="S",
                     help="seconds between status lines (default 1 on a terminal, 5 otherwise)")
    run.set_defaults(handler=_run)


def _add_export_command(commands: argparse._SubParsersAction) -> None:
    """`camstream export`'s options."""
    from camstream.catalog import DEFAULT_MODEL, EXPORTABLE_METHODS

    export = commands.add_parser("export", help="write the model and its explanation as one ONNX graph",
                                 description="Write one ONNX graph that takes uint8 RGB frames at the model's size "
                                 "(and a class id, -1 for top-1) and returns logits, the explained class, its score "
                                 "and the CAM in [0, 1], computed inside the graph; labels and settings travel in "
                                 "the file. Run it with camstream run --model FILE.onnx (ONNX Runtime) or "
                                 "--backend openvino. Methods: gradcam, gradcam++, cam, recipro, on heads made of "
                                 "an activation, global average pooling and a linear layer. Needs pip install "
                                 "'camstream[onnx]'.")
    export.add_argument("--model", default=DEFAULT_MODEL, help=f"model name or file (default {DEFAULT_MODEL})")
    export.add_argument("--weights", metavar="FILE", help="state-dict file for the model")
    _add_model_card_options(export)
    export.add_argument("--layer", metavar="NAME", help="target layer (default: the last spatial feature layer)")
    export.add_argument("--method", choices=EXPORTABLE_METHODS, help="explanation method (default gradcam)")
    export.add_argument("--out", required=True, metavar="FILE.onnx", help="where to write the graph")
    export.add_argument("--int8", metavar="IMAGES", help="also quantise the backbone's convolutions to int8 "
                        "(ONNX Runtime's static quantiser), calibrated on half the images of this folder and checked "
                        "against the float graph on the other half (top-1 agreement, CAM correlation); written "
                        "beside --out as NAME-int8.onnx")
    export.set_defaults(handler=_export)


def _add_fleet_command(commands: argparse._SubParsersAction) -> None:
    """`camstream fleet`'s options."""
    from camstream.catalog import DEFAULT_MODEL, IMAGE_METHODS

    fleet = commands.add_parser("fleet", help="many streams over Ray: one actor per stream (or group)",
                                description="Run the same pipeline as `camstream run` for every source of a "
                                "sources file on Ray actors; each stream writes OUT/<n>-<name>/ and the driver "
                                "writes OUT/fleet.json (per-stream fps, drops, latency p95, errors, totals). "
                                "Without --address a local Ray instance is started. Exit 3 when some stream "
                                "failed (the others still finish), 130 on Ctrl-C. Needs pip install "
                                "'camstream[fleet]'.")
    fleet.add_argument("--sources", required=True, metavar="FILE", help="sources, one per line (# comments)")
    fleet.add_argument("--address", metavar="auto|ray://HOST:PORT", help="join this Ray cluster (default: local)")
    fleet.add_argument("--streams-per-actor", type=int, default=1, metavar="N",
                       help="streams batched together in one actor (default 1)")
    fleet.add_argument("--cpus-per-actor", type=float, default=1.0, metavar="N",
                       help="CPUs Ray reserves per actor (default 1)")
    fleet.add_argument("--sink", action="append", choices=("file", "null"), metavar="SINK",
                       help="file (default) or null, per stream")
    fleet.add_argument("--max-frames", type=int, metavar="N", help="stop each stream after N input frames")
    fleet.add_argument("--method", choices=IMAGE_METHODS,
                       help="explanation method (default: gradcam for CNNs, vit-recipro for ViTs)")
    fleet.add_argument("--model", default=DEFAULT_MODEL, help=f"as for run (default {DEFAULT_MODEL})")
    fleet.add_argument("--max-batch", type=int, default=4, metavar="N", help="frames per inference batch")
    fleet.add_argument("--out", default="fleet-out", metavar="DIR", help="where to write (default fleet-out)")
    fleet.set_defaults(handler=_fleet)


def _add_bench_command(commands: argparse._SubParsersAction) -> None:
    """`camstream bench`'s options."""
    bench = commands.add_parser("bench", help="measure speed: explainers vs plain inference and peers, pipeline, "
                                "kernels, edge profile", description="Benchmarks measured side by side in one run, "
                                "reported as times and ratios; writes OUT/bench.json and OUT/bench.md.")
    bench.add_argument("--quick", action="store_true", help="one model, 720p only, fewer rounds (a few minutes)")
    bench.add_argument("--smoke", action="store_true", help="every section once on the least work, to check that "
                       "the bench runs here (its figures mean nothing; the tests use it)")
    bench.add_argument("--one-core", action="store_true", help="only the edge profile: the README's edge command "
                       "(an exported graph, 1 thread, batch 1) pinned to one core, on ONNX Runtime and OpenVINO, at "
                       "720p and 480p, to null and to a file; run it on the board itself")
    bench.add_argument("--out", default="bench-out", metavar="DIR", help="where to write (default bench-out)")
    bench.add_argument("--footage", metavar="VIDEO", help="clip to derive the 720p/1080p 60 fps inputs from "
                       "(default: ../shared dashcam clip if present, else the demo clip)")
    bench.set_defaults(handler=_bench)


def _add_eval_command(commands: argparse._SubParsersAction) -> None:
    """`camstream eval`'s options."""
    from camstream.catalog import BACKENDS, DEFAULT_MODEL

    evaluate = commands.add_parser("eval", help="faithfulness, localisation and cost of the methods on a folder "
                                   "of images", description="Evaluate methods, full map vs thresholded maps, on "
                                   "a folder of images with optional ground truth (VIA polygon JSON, "
                                   "ground-truth/NAME.txt boxes, or NAME_mask.png); writes OUT/eval.json and "
                                   "OUT/eval.md.")
    evaluate.add_argument("--data", required=True, metavar="DIR", help="folder of images (and ground truth)")
    evaluate.add_argument("--methods",
                          help="comma-separated: camstream's cam, gradcam, gradcam++, recipro (default: all four) "
                          "and/or the baselines rise, scorecam, pgc-gradcam, captum-deeplift, captum-lrp, "
                          "captum-lime (pip install 'camstream[baselines]'); for a detector box-gradcam, eigencam "
                          "(default both), scored per box beside random, centred, box-prior maps and D-RISE")
    evaluate.add_argument("--drise-masks", type=int, default=500, metavar="N",
                          help="detectors: masks of the D-RISE reference (default 500)")
    evaluate.add_argument("--thresholds", default="1,5,10,20,dynamic,faithful",
                          help="comma-separated keep-percentages, dynamic and/or faithful[:R] (default "
                               "1,5,10,20,dynamic,faithful)")
    evaluate.add_argument("--class-id", type=int, metavar="N",
                          help="explain class N on the photos (default: each photo's top-1)")
    evaluate.add_argument("--video-class-id", type=int, metavar="N",
                          help="explain class N on the video (default: each frame's own top-1)")
    evaluate.add_argument("--model", default=DEFAULT_MODEL, help=f"as for run (default {DEFAULT_MODEL})")
    evaluate.add_argument("--weights", metavar="FILE", help="as for run: state-dict or checkpoint file for --model")
    _add_model_card_options(evaluate)
    evaluate.add_argument("--backend", choices=BACKENDS, default="torch",
                          help="backend of camstream's own methods: torch, or onnxruntime / openvino (the "
                               "explanation inside the exported graph, fed uint8 frames as a stream would); the "
                               "baselines run on torch (default torch)")
    evaluate.add_argument("--runtime", choices=("auto", "torch", "openvino", "onnxruntime"), default="auto",
                          help="what computes the model's passes: the scoring of every perturbed image and, with "
                               "--backend torch, torch's methods through an exported graph that gives the same maps "
                               "(auto: OpenVINO, else ONNX Runtime, else torch; a head the graph cannot reproduce "
                               "stays on torch; default auto)")
    evaluate.add_argument("--limit", type=int, metavar="N", help="first N images only")
    evaluate.add_argument("--steps", type=int, default=10,
                          help="insertion/deletion steps (default 10: the mean AUC within 0.007 of 224 steps on the "
                               "shared balloon photos, full and thresholded maps; 16 steps within 0.004 at 1.6× the "
                               "cost; 8 steps were 0.011 off)")
    evaluate.add_argument("--pointing-scale", choices=("image", "input"), default="image",
                          help="where the pointing game's 15 px are measured: on each original image, against "
                               "its truth at its own size, as Zhang et al. (default), or on the model input")
    evaluate.add_argument("--road-percents", default="20,50,80", metavar="K,K,...",
                          help="ROAD's removal percentages for the full maps (default 20,50,80: each image imputed "
                               "6 times per map, ~0.3 s; 'none' skips ROAD)")
    evaluate.add_argument("--video", metavar="CLIP", default="demo",
                          help="clip for temporal stability ('demo': the bundled clip; 'none': skip)")
    evaluate.add_argument("--video-frames", type=int, default=96, metavar="N", help="frames of it (default 96)")
    evaluate.add_argument("--smooth", type=float, default=0.6, metavar="ALPHA",
                          help="EMA weight compared against raw maps on the video (default 0.6)")
    evaluate.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    evaluate.add_argument("--out", default="eval-out", metavar="DIR", help="where to write (default eval-out)")
    evaluate.set_defaults(handler=_eval)


def _add_sanity_command(commands: argparse._SubParsersAction) -> None:
    """`camstream sanity`'s options."""
    from camstream.catalog import CNN_METHODS, DEFAULT_MODEL

    sanity = commands.add_parser("sanity", help="do the methods pass Adebayo et al.'s sanity checks on this model?",
                                 description="Adebayo et al. (2018) sanity checks for each CNN method on the model: "
                                 "class sensitivity (the top-1 map against another class's map) and model-parameter "
                                 "randomisation (against the map of the model with a random classifier), as Spearman "
                                 "correlations; a method passes both below 0.5. Images: --data, or frames of the demo "
                                 "clip.")
    sanity.add_argument("--model", default=DEFAULT_MODEL, help=f"as for run (default {DEFAULT_MODEL})")
    sanity.add_argument("--weights", metavar="FILE", help="as for run: state-dict or checkpoint file for --model")
    _add_model_card_options(sanity)
    sanity.add_argument("--methods", default=",".join(CNN_METHODS), help="comma-separated (default: all CNN methods)")
    sanity.add_argument("--data", metavar="DIR", help="folder of images (default: frames of the demo clip)")
    sanity.add_argument("--frames", type=int, default=8, metavar="N", help="images to check on (default 8)")
    sanity.add_argument("--draws", type=int, default=5, metavar="N",
                        help="other classes and random classifiers drawn per check (1-8, default 5): one draw moves "
                             "the figure by 0.1-0.35, so each is reported as the mean and range of N")
    sanity.add_argument("--json", action="store_true", help="print one JSON object")
    sanity.set_defaults(handler=_sanity)


def _add_inspect_command(commands: argparse._SubParsersAction) -> None:
    """`camstream inspect`'s options."""
    from camstream.catalog import MODEL_NAMES

    inspect = commands.add_parser("inspect", help="what camstream will do with a model: input, classes, layers, "
                                  "methods and their cost here",
                                  description="Load MODEL (a name, or your model file with its model card) and "
                                  "print its kind, the input it is fed (size, resize mode, mean, std), its class "
                                  "names, the candidate target layers, and each method that applies timed on one "
                                  "frame on this machine beside the plain forward.")
    inspect.add_argument("model", help=f"{', '.join(MODEL_NAMES)} or a model file (pickled nn.Module)")
    inspect.add_argument("--weights", metavar="FILE", help="state-dict file for the model")
    _add_model_card_options(inspect)
    inspect.add_argument("--layer", metavar="NAME", help="target layer to time the methods on (default: the last "
                         "spatial feature layer)")
    inspect.add_argument("--rounds", type=int, default=5, metavar="N", help="timed runs per method (default 5)")
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    inspect.set_defaults(handler=_inspect)


def _options_card(args: argparse.Namespace):
    """The model card that the model-card options give (`_add_model_card_options`), checked."""
    from camstream.model.card import options_card, read_labels

    card = options_card(args.input_size, args.mean, args.std, args.resize, args.score_threshold, args.max_boxes)
    return dataclasses.replace(card, labels=read_labels(args.labels)) if args.labels else card


def _inspect(args: argparse.Namespace) -> int:
    from camstream.commands.inspect_model import inspect_model, inspect_text

    if args.rounds < 1:
        raise CamstreamError("--rounds must be at least 1")
    card = _options_card(args)
    with step(f"reading {args.model} and timing its methods"):
        facts = inspect_model(args.model, args.weights, card, args.layer, args.rounds)
    print(json.dumps(facts) if args.json else inspect_text(facts))
    return 0


def _sanity(args: argparse.Namespace) -> int:
    from camstream.catalog import CNN_METHODS
    from camstream.eval.sanity import sanity_checks
    from camstream.sanity_record import record_verdicts

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in CNN_METHODS]
    if unknown or not methods:
        raise CamstreamError(f"unknown method {(unknown or [''])[0]!r} (choose from {', '.join(CNN_METHODS)})")
    if args.frames < 2:
        raise CamstreamError("--frames must be at least 2")
    if not 1 <= args.draws <= 8:
        raise CamstreamError("--draws must be 1 to 8")
    with step(f"sanity checks of {', '.join(methods)} on {args.model}"):
        results = sanity_checks(_sanity_images(args.data, args.frames), methods, args.model, args.weights,
                                _options_card(args), args.draws)
    record_verdicts(args.model, results, args.weights)  # run and explain then warn when the method failed here
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"{results['model']}, {results['images']} images; Spearman of the maps, mean [range] over "
          f"{results['draws']} draws, pass below {results['pass_below']}:")
    for method, row in results["methods"].items():
        verdict = "pass" if row["passed"] else "FAIL: the map barely depends on the class or on the model"
        shown = [f"{d['mean']:+.2f} [{d['min']:+.2f}, {d['max']:+.2f}]" for d in (row["class_sensitivity"],
                                                                              row["randomisation"])]
        print(f"  {method:10s} class {shown[0]}  randomised model {shown[1]}  {verdict}")
    return 0


def _sanity_images(folder: str | None, count: int) -> list:
    """`count` images of `folder`, or `count` frames spread over the demo clip."""
    if folder is not None:
        from camstream.backends.export import read_image_folder

        return [frame[..., ::-1].copy() for frame in read_image_folder(folder, (224, 224))[:count]]
    import av

    from camstream.stream.config import demo_clip

    with av.open(demo_clip()) as container:
        frames = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    step = max(1, len(frames) // count)
    return frames[::step][:count]


def _road_percents(text: str) -> tuple[int, ...]:
    """`--road-percents`: whole percentages in 1..99, comma-separated, or 'none'."""
    if text.strip().lower() == "none":
        return ()
    try:
        percents = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        percents = ()
    if not percents or not all(1 <= percent <= 99 for percent in percents):
        raise CamstreamError(f"--road-percents {text!r}: give whole percentages from 1 to 99, such as 20,50,80, or "
                             "'none' to skip ROAD")
    return percents


def _eval(args: argparse.Namespace) -> int:
    from camstream.catalog import DETECTOR_MODELS
    from camstream.eval.explainers import EXPLAINERS
    from camstream.eval.suite import EvalPlan, run_eval
    from camstream.stream.config import demo_clip
    from camstream.threshold_spec import parse_threshold

    if args.model in DETECTOR_MODELS:
        return _eval_detector(args)
    if os.path.isfile(args.model):  # a file may hold a detector (a YOLO .pt, a pickled torchvision model)
        from camstream.eval.datasets import check_data_folder
        from camstream.model.detectors import DetectorModel
        from camstream.model.load import load_model
        from camstream.storage import check_writable_folder

        check_data_folder(args.data)  # what can be checked without the model is, before it loads
        check_writable_folder(args.out)
        with step(f"reading {args.model}"):
            spec = load_model(args.model, args.weights, _options_card(args))
        if isinstance(spec.module, DetectorModel):
            return _eval_detector(args, spec)
    methods = [m.strip() for m in (args.methods or "cam,gradcam,gradcam++,recipro").split(",") if m.strip()]
    unknown = [m for m in methods if m not in EXPLAINERS]
    if unknown or not methods:
        raise CamstreamError(f"unknown method {(unknown or [''])[0]!r} (choose from {', '.join(EXPLAINERS)})")
    thresholds = [t.strip() for t in args.thresholds.split(",") if t.strip()]
    for text in thresholds:
        parse_threshold(text)
    if not 0.0 <= args.smooth < 1.0:
        raise CamstreamError("--smooth must be in [0, 1)")
    if args.video_frames < 2:
        raise CamstreamError("--video-frames must be at least 2")
    video = {"demo": demo_clip(), "none": None}.get(args.video, args.video)
    if video is not None and not os.path.isfile(video):
        raise CamstreamError(f"no such video: {video}")
    road_percents = _road_percents(args.road_percents)
    progress = timed_progress()

    plan = EvalPlan(methods=methods, thresholds=thresholds, class_id=args.class_id,
                    video_class_id=args.video_class_id, model=args.model, weights=args.weights,
                    card=_options_card(args),
                    backend=args.backend, runtime=args.runtime, limit=args.limit, steps=args.steps, video=video,
                    video_frames=args.video_frames, smooth=args.smooth, plots=not args.no_plots,
                    road_percents=road_percents, pointing_scale=args.pointing_scale)
    run_eval(args.data, args.out, plan, progress=progress)
    with open(os.path.join(args.out, "eval.md")) as summary:
        print(summary.read())
    print(f"wrote {args.out}/eval.json, {args.out}/eval.md and the plots listed there")
    return 0


def _eval_detector(args: argparse.Namespace, spec=None) -> int:
    """`camstream eval --model DETECTOR`: per-box faithfulness on the photos of --data and frames of --video
    (`spec`: the detector, when a file was already read to find out that it holds one)."""
    from camstream.catalog import DETECTOR_METHODS
    from camstream.eval.datasets import check_data_folder

    check_data_folder(args.data)
    methods = [m.strip() for m in (args.methods or ",".join(DETECTOR_METHODS)).split(",") if m.strip()]
    unknown = [m for m in methods if m not in DETECTOR_METHODS]
    if unknown or not methods:
        raise CamstreamError(f"method {(unknown or [''])[0]!r} does not explain detectors (choose from "
                             f"{', '.join(DETECTOR_METHODS)})")
    if args.steps < 2 or args.drise_masks < 1:
        raise CamstreamError("--steps must be at least 2 and --drise-masks at least 1")
    video = None if args.video in ("none", "demo") else args.video
    if video is not None and not os.path.isfile(video):
        raise CamstreamError(f"no such video: {video}")
    progress = timed_progress()

    from camstream.storage import check_writable_folder

    check_writable_folder(args.out)  # before the model loads and the evaluation runs, not after
    from camstream.eval.detection import markdown, read_photos, run_detector_eval, spread_frames
    from camstream.model.load import load_model

    if spec is None:
        progress(f"loading {args.model} …")
        spec = load_model(args.model, args.weights, _options_card(args))
    photos, skipped = read_photos(args.data, spec.input_size, spec.resize)
    photos = photos[:args.limit] if args.limit else photos
    if video is not None:
        photos += spread_frames(video, min(args.video_frames, 96), spec.input_size, spec.resize)
    if not photos:
        reasons = "; ".join(f"{entry['file']}: {entry['reason']}" for entry in skipped[:3])
        raise CamstreamError(f"{args.data} holds no readable image" + (f" ({len(skipped)} skipped: {reasons})"
                                                                      if skipped else ""))
    results = run_detector_eval(spec, photos, methods, args.steps, args.drise_masks, progress)
    results["skipped_files"] = skipped
    os.makedirs(args.out, exist_ok=True)
    from camstream.storage import write_json_atomic

    write_json_atomic(os.path.join(args.out, "eval.json"), results)
    text = markdown(results, spec.label)
    with open(os.path.join(args.out, "eval.md"), "w", encoding="utf-8") as handle:
        handle.write(text)
    print(text)
    print(f"wrote {args.out}/eval.json and {args.out}/eval.md")
    return 0


def _fleet(args: argparse.Namespace) -> int:
    from camstream.commands.fleet import FleetConfig, run_fleet
    from camstream.stream.config import PipelineConfig, read_sources_file

    if args.streams_per_actor < 1:
        raise CamstreamError("--streams-per-actor must be at least 1")
    pipeline = PipelineConfig(sinks=tuple(args.sink or ("file",)), model=args.model, method=args.method,
                              max_batch=args.max_batch, max_frames=args.max_frames)
    config = FleetConfig(read_sources_file(args.sources), args.out, args.address, args.streams_per_actor,
                         args.cpus_per_actor, pipeline)
    for signum in (signal.SIGINT, signal.SIGTERM):  # from now on a stop reaches every actor (KeyboardInterrupt)
        signal.signal(signum, signal.default_int_handler)

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    fleet = run_fleet(config, progress)
    summary = fleet["summary"]
    for stream in fleet["streams"]:
        state = f"error: {stream['error']}" if stream["error"] else f"{stream['fps']:.1f} fps"
        print(f"stream {stream['stream']} ({stream['source']}): {stream['frames_out']} of {stream['frames_in']} "
              f"frames out, {stream['dropped']} dropped, {state}")
    print(f"fleet: {summary['streams']} streams on {summary['actors']} actors, {summary['total_fps']:.1f} fps in "
          f"all, {summary['frames_out']} frames out in {summary['elapsed_s']:.1f} s; report: "
          f"{os.path.join(args.out, 'fleet.json')}")
    if summary["interrupted"]:
        return 130
    return 3 if summary["failed_streams"] else 0


def _bench(args: argparse.Namespace) -> int:
    from camstream.bench.suite import BenchPlan, run_bench, run_one_core_bench

    plan = BenchPlan.smoke() if args.smoke else BenchPlan.quick() if args.quick else BenchPlan()
    progress = timed_progress()

    results = (run_one_core_bench if args.one_core else run_bench)(plan, args.out, args.footage, progress)
    with open(os.path.join(args.out, "bench.md")) as summary:
        print(summary.read())
    met = sum(check["met"] for check in results["targets"])
    print(f"{met} of {len(results['targets'])} targets met; wrote {args.out}/bench.json and {args.out}/bench.md")
    for warning in results["trust"]["warnings"]:
        print(f"camstream: warning: bench not trustworthy: {warning}", file=sys.stderr)
    failed = results.get("failed")
    if failed:
        said = "; ".join(f"{key}: {why}" for key, why in failed.items())
        raise StageError(f"bench: {len(failed)} section(s) failed ({said}); the other sections are in "
                         f"{args.out}/bench.json and {args.out}/bench.md")
    return 0


def _build_pipeline(args: argparse.Namespace):
    """The validated config of `camstream run`'s options, built into a Pipeline (model loaded, sources open)."""
    from camstream.stream.config import ConfigError, config_from_options, flag, read_sources_file
    from camstream.stream.pipeline import Pipeline, preflight

    sources = tuple(args.source or ()) + (read_sources_file(args.sources) if args.sources else ())
    try:
        config = config_from_options(args, sources)
    except ConfigError as exc:
        raise CamstreamError(f"{flag(exc.field)} {exc.problem}") from None
    preflight(config)  # a missing or unreadable source is said before the line that says the model loads
    # say at once what the first seconds go to (the model loads, is exported or traced), terminal or not,
    # and again every few seconds until it is done
    began = time.perf_counter()
    with step(f"loading {config.model} on the {config.backend or 'default'} backend"):
        pipeline = Pipeline(config, preflighted=True)
    say(f"ready in {time.perf_counter() - began:.1f} s: {pipeline.method_name} on {pipeline.backend.layer} "
        f"({pipeline.backend.name}), {len(pipeline.streams)} source(s)")
    return pipeline


def _run(args: argparse.Namespace) -> int:
    pipeline = _build_pipeline(args)
    for signum in (signal.SIGINT, signal.SIGTERM):  # from now on a stop goes through every stage in order
        signal.signal(signum, lambda *_args: pipeline.interrupt())
    _announce_servers(pipeline)
    progress = None if args.quiet else _Progress(pipeline)
    report = pipeline.run(on_progress=progress, progress_every_s=args.status_every or (
        0.5 if sys.stderr.isatty() else 5.0))
    if progress is not None:
        progress.close()
    _print_summary(report, pipeline.report_path)
    if pipeline.config.keep_serving and pipeline.dashboard is not None and not pipeline.interrupted:
        _serve_until_interrupted(pipeline)
    if pipeline.report_error is not None:  # the figures are not lost: they go to stderr, as one JSON line
        problem = None
        try:
            _raise_stage_error(pipeline)
        except CamstreamError as exc:
            problem = exc
        said = f"{redact(str(problem))}; and {pipeline.report_error}" if problem else pipeline.report_error
        print(f"camstream: error: {said}; the report follows on stderr as one JSON line", file=sys.stderr,
              flush=True)
        print(redact(json.dumps(report)), file=sys.stderr, flush=True)
        return 130 if pipeline.interrupted else max(OutputError.exit_code, getattr(problem, "exit_code", 0))
    if pipeline.interrupted:
        return 130
    _raise_stage_error(pipeline)
    if pipeline.sink_errors:
        raise OutputError(pipeline.sink_errors[0])
    return 0


def _announce_servers(pipeline) -> None:
    """Where the dashboard and the MJPEG streams are served: the dashboard's link carries its token (it is
    meant to be clicked by whoever started the run; reports name the address without it)."""
    if pipeline.dashboard is not None:
        print(f"camstream: dashboard at {pipeline.dashboard.link}", file=sys.stderr, flush=True)
    for sink in pipeline.sinks:
        if sink.name == "mjpeg":
            print(f"camstream: serving {sink.describe()['url']}", file=sys.stderr, flush=True)


def _serve_until_interrupted(pipeline) -> None:
    """`--keep-serving`: the dashboard stays up with the run's last frame and figures until Ctrl-C / SIGTERM."""
    import threading

    leave = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_args: leave.set())
    print(f"camstream: the run ended; the dashboard stays up at {pipeline.dashboard.link} with its last frame and "
          "figures: Ctrl-C to leave", file=sys.stderr, flush=True)
    while not leave.wait(0.5):
        pass
    pipeline.stop_serving()


def _raise_stage_error(pipeline) -> None:
    """The first stage error of a finished run as one line: our own errors as they are, a write that failed
    as an OutputError (exit 4), anything else as a StageError (exit 1) naming the stage; never a traceback."""
    failed = next((stage for stage in pipeline.stages if stage.error is not None), None)
    if failed is None:
        return
    _raise_if_some_streams_failed(pipeline)
    error, stage = failed.error, failed.name.removeprefix("camstream-")
    if isinstance(error, CamstreamError):
        raise error
    if isinstance(error, OSError) and stage == "render":  # the render thread is the one that writes the sinks
        raise OutputError(f"writing the output failed: {error.strerror or error}; what was written is kept and "
                          f"the report says so ({pipeline.report_path})")
    raise StageError(f"the {stage} stage failed: {type(error).__name__}: {error} ({pipeline.report_path})")


def _raise_if_some_streams_failed(pipeline) -> None:
    """With several streams, captures that failed while the model and the other streams ran: exit 3, naming
    each failed stream (their errors are also in the report)."""
    streams = pipeline.streams
    if len(streams) < 2 or pipeline.infer.error is not None:
        return
    if any(isinstance(s.render.error, OSError) for s in streams):
        return  # a write that failed is said as such (exit 4)
    failed = [s for s in streams if s.capture.error is not None and not isinstance(s.capture.error, KeyboardInterrupt)]
    if failed and len(failed) < len(streams):
        named = "; ".join(f"stream {s.index} ({s.source.info.name}): {s.capture.error}" for s in failed)
        raise StreamsFailed(f"{len(failed)} of {len(streams)} streams failed: {named}")


def _exit_interrupted(*_args) -> None:
    print("camstream: interrupted", file=sys.stderr, flush=True)
    os._exit(130)


class _Progress:
    """The run's progress on stderr: on a terminal, a tqdm bar (frames done of the total, fps, ETA, and the
    drops, queue and memory beside it) when the length is known, else the status line redrawn in place; in a
    pipe or a log, one plain status line every interval."""

    def __init__(self, pipeline) -> None:
        self.pipeline = pipeline
        self.tty = sys.stderr.isatty()
        self.bar = None
        total = pipeline.progress()[1]
        if self.tty and total:
            from tqdm import tqdm

            try:  # a terminal that reports no size (a bare pty) gets 100 columns; tqdm would print nothing
                sized = os.get_terminal_size(sys.stderr.fileno()).columns > 0
            except OSError:
                sized = False
            self.bar = tqdm(total=total, unit="frame", file=sys.stderr, dynamic_ncols=sized,
                            ncols=None if sized else 100, nrows=None if sized else 20, smoothing=0.3,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]"
                                       "{postfix}")

    def __call__(self, line: str) -> None:
        if self.bar is not None:
            done = min(self.pipeline.progress()[0], self.bar.total)
            self.bar.update(done - self.bar.n)
            kept = [part for part in line.split(" | ") if part.startswith(("dropped", "queue", "rss", "reconnects"))]
            self.bar.set_postfix_str(" | ".join(kept), refresh=True)
        elif self.tty:
            print("\r" + line[:200] + "\x1b[K", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        """End the bar (or the redrawn line) so what follows starts on its own line."""
        if self.bar is not None:
            self(self.pipeline.status_line())
            self.bar.close()
        elif self.tty:
            print(file=sys.stderr)


def _print_summary(report: dict, report_path: str | None) -> None:
    total, interrupted = report["total"], " (interrupted)" if report["interrupted"] else ""
    if total["streams"] > 1:
        for index, stream in enumerate(report["streams"]):
            failed = f", error: {stream['error']}" if stream["error"] else ""
            written = f" → {stream['out_dir']}" if os.path.isdir(stream["out_dir"]) else ""  # null sinks write none
            print(f"stream {index} ({stream['source']['name']}): {stream['frames_out']} of {stream['frames_in']} "
                  f"frames out, {stream['dropped']} dropped, {stream['fps']:.1f} fps, latency p95 "
                  f"{stream['latency_ms']['p95']:.0f} ms{failed}{written}")
        print(f"{total['streams']} streams: {total['frames_out']} frames out in {total['elapsed_s']:.1f} s, "
              f"{total['fps']:.1f} fps in all, mean batch {total['mean_batch']:.2f}; peak RSS "
              f"{total['rss_peak_mb']:.0f} MB{interrupted}")
        print(f"report: {report_path or 'not written'}")
        return
    stream = report["streams"][0]
    stages = ", ".join(f"{name} {values['p50_ms']:.1f}" for name, values in stream["stages"].items()
                       if values["count"])
    damaged = stream["input"]["undecodable_packets"]
    skipped = f", {damaged} damaged packet{'s' * (damaged != 1)} skipped" if damaged else ""
    print(f"{stream['frames_out']} of {stream['frames_in']} frames out, {stream['dropped']} dropped{skipped}, "
          f"{stream['fps']:.1f} fps{interrupted}")
    print(f"p50 ms per frame: {stages}; end-to-end p50 {stream['latency_ms']['p50']:.1f} / p95 "
          f"{stream['latency_ms']['p95']:.1f} ms; peak RSS {stream['rss_peak_mb']:.0f} MB")
    ended = stream["input"]["ended_early"]
    if ended:
        print(f"input ended early: {ended['frames']} of the {ended['declared']} frames the file declares")
    for sink in stream["sinks"]:
        if sink["type"] == "file":
            print(f"video: {sink['path']}")
    print(f"report: {report_path or 'not written'}")


def _explain(args: argparse.Namespace) -> int:
    from camstream.commands.explain_image import explain_image

    with step(f"explaining {args.image} with {args.model}"):
        summary = explain_image(args.image, args.out, args.model, args.method, args.threshold, args.class_id,
                                args.weights, args.layer, args.backend, args.device, card=_options_card(args))
    if args.json:
        print(json.dumps(summary))
    elif "boxes" in summary:
        named = ", ".join(f"{box['label']} {box['score']:.2f}" for box in summary["boxes"]) or "no detections"
        print(f"{len(summary['boxes'])} boxes ({named}), {summary['method']} on {summary['layer']} "
              f"({summary['backend']}) in {summary['ms']:.1f} ms → {summary['out']}")
    else:
        print(f"{summary['label']} (class {summary['class_id']}, score {summary['score']:.3f}) "
              f"{summary['method']} on {summary['layer']} ({summary['backend']}) in {summary['ms']:.1f} ms → "
              f"{summary['out']}")
        kept = summary.get("faithful")
        if kept:
            print(f"faithful: the top {kept['keep_percent']:g} % of the map, alone, keeps {kept['retained']:.0%} of "
                  f"the score" + ("" if kept["reached"] else f" — short of {args.threshold.faithful:g}: even the "
                                  "largest region tried does not carry the decision"))
    return 0


def _export(args: argparse.Namespace) -> int:
    from camstream.backends.export import export_model

    card = _options_card(args)
    with step(f"exporting {args.model} to {args.out}"):
        written = export_model(args.out, args.model, args.method, args.weights, args.layer, card=card)
    print(f"{written['model']} {written['method']} on {written['layer']}, input {written['input_size'][0]}×"
          f"{written['input_size'][1]} → {written['out']} ({written['bytes'] / 1e6:.1f} MB)")
    if args.int8:
        from camstream.backends.export import quantise_int8, read_image_folder

        frames = read_image_folder(args.int8, tuple(written["input_size"]))
        quantised = quantise_int8(args.out, args.out.removesuffix(".onnx") + "-int8.onnx", frames[::2], frames[1::2])
        print(f"int8 → {quantised['out']} ({quantised['bytes'] / 1e6:.1f} MB): top-1 agreement "
              f"{quantised['top1_agreement']:.3f}, CAM correlation mean {quantised['cam_correlation_mean']} (min "
              f"{quantised['cam_correlation_min']}) on {quantised['frames_checked']} images not used to calibrate")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    for signum in (signal.SIGINT, signal.SIGTERM):  # until a run starts there is nothing to save: leave at once
        signal.signal(signum, _exit_interrupted)
    warnings.showwarning = lambda message, *_rest, **_kw: print(f"camstream: warning: {redact(str(message))}",
                                                                  file=sys.stderr)
    for word in sys.argv[1:] if argv is None else argv:  # before anything can print a source URL
        remember_secrets(word)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            args = parser.parse_args(["run", *(argv or [])])
        configure_progress(quiet=args.quiet, verbose=args.verbose)
        if args.command == "explain":
            return _explain(args)
        return args.handler(args)
    except CamstreamError as exc:
        print(f"camstream: error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:  # an optional part not installed: name the extra that brings it
        from camstream.catalog import missing_extra_message

        message = missing_extra_message(exc.name or "")
        if message is None:
            raise
        print(f"camstream: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("camstream: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # whoever read our output left (`camstream run | head -1`): the files are written
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at interpreter exit
        return 141  # as a shell reports a process ended by SIGPIPE


def console() -> NoReturn:
    """The `camstream` command: `main`, then an immediate exit. Every file is written and closed by then, and
    skipping the interpreter's teardown (torch's above all) saves 1–2.5 s before the shell prompt returns."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    console()
