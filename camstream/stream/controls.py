"""What the dashboard may change in a running pipeline, and the live figures it shows.

`LiveControls.apply` takes a dict of settings — method, threshold, alpha, colormap, class_id (a number or a class
name), smooth, hud, paused, step — and optionally `stream` (one stream's index; absent or null: every stream),
checks every one before changing any, then sets them where each stage reads it on its next frame: the
painters (threshold, alpha, colormap), the render stages (HUD, pause), the inference stage (class and smoothing,
per stream) and the backend (method, taken before its next batch: one model, so one method for every stream).
`LiveControls.stats` is `/stats`: the settings of stream 0 under `controls`, each stream's own under its entry.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from camstream.catalog import COLORMAPS, HUD_PLACES
from camstream.kernels import colormap_lut
from camstream.threshold_spec import parse_threshold

if TYPE_CHECKING:
    from camstream.backends import Backend
    from camstream.stream.infer import InferenceStage
    from camstream.stream.streams import Stream

RECENT_CLASSES = 12  # the class strip: the last N explained frames of each stream


class LiveControls:
    """The running pipeline's adjustable settings and live figures (see the module)."""

    def __init__(self, streams: list[Stream], infer: InferenceStage, backend: Backend) -> None:
        self.streams = streams
        self.infer = infer
        self.backend = backend
        self.colormaps = [stream.config.colormap for stream in streams]  # each stream's colour map, by name
        self.running = True
        self._rates: dict[int, tuple[float, int, float]] = {}  # stream → (time, frames out, fps) at the last read

    def state(self, index: int = 0) -> dict[str, Any]:
        """Stream `index`'s settings as they are now, and what each may be set to."""
        stream = self.streams[index]
        painter, render = stream.painter, stream.render
        lut = painter.lut  # (256, 3) BGR, the one the frames are painted with: the colour bar's stops as hex RGB
        stops = [f"#{int(lut[i, 2]):02x}{int(lut[i, 1]):02x}{int(lut[i, 0]):02x}" for i in (*range(0, 256, 32), 255)]
        class_id = self.infer.class_ids[index]
        smoothers = self.infer.smoothers
        return {"stream": index, "method": self.backend.method, "methods": self.backend.methods(),
                "threshold": str(painter.spec), "alpha": painter.alpha, "colormap": self.colormaps[index],
                "colormaps": sorted(COLORMAPS), "colormap_stops": stops, "class_id": class_id,
                "class_label": None if class_id is None else self.label(class_id), "classes": self.backend.classes,
                "smooth": smoothers[index].alpha if smoothers else 0.0, "hud": render.hud,
                "huds": list(HUD_PLACES), "paused": render.gate.paused}

    def label(self, class_id: int) -> str:
        """The model's name for `class_id` (`class N` where it has none)."""
        return self.streams[0].render.label(class_id)

    def labels(self) -> list[str]:
        """Every class name of the model, by id (`/labels`: the page's searchable class list)."""
        return list(self.backend.labels) if self.backend.labels else [self.label(i) for i in range(self.backend.classes
                                                                                                   or 0)]

    def original(self, index: int) -> bytes | None:
        """Stream `index`'s newest frame before the overlay, as a JPEG (None: no such stream, or no frame yet)."""
        return self.streams[index].render.original_jpeg() if 0 <= index < len(self.streams) else None

    def snapshot(self, index: int) -> dict | None:
        """Stream `index`'s newest explained frame: its facts, the settings and its raw map (None: no such stream)."""
        if not 0 <= index < len(self.streams):
            return None
        taken = self.streams[index].render.snapshot()
        taken["facts"] = {"stream": index, **taken["facts"], "settings": self.state(index)}
        return taken

    def apply(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Check every setting in `changes`, then apply them all, to `changes["stream"]` alone where given (else
        to every stream); returns that stream's `state()`. A ValueError names the first bad one (nothing is
        changed then)."""
        changes = dict(changes)
        index = self._stream(changes.pop("stream", None))
        if index is not None and "method" in changes:
            raise ValueError("method is shared by every stream (one model explains them all): send it without "
                             "'stream'")
        checked = {name: self._check(name, value) for name, value in changes.items()}
        chosen = self.streams if index is None else [self.streams[index]]
        for name, value in checked.items():
            self._set(name, value, chosen)
        return self.state(index or 0)

    def _stream(self, value: Any) -> int | None:
        """The stream index a change names (None: every stream)."""
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(self.streams):
            raise ValueError(f"stream must be a stream's index, 0 to {len(self.streams) - 1}, or null for every "
                             "stream")
        return value

    def _check(self, name: str, value: Any) -> Any:  # noqa: C901 - one branch per setting, each a line or two
        if name == "method":
            if value not in self.backend.methods():
                raise ValueError(f"method must be one of {', '.join(self.backend.methods())}")
            return value
        if name == "threshold":
            try:
                spec = parse_threshold(str(value))
            except Exception as exc:  # noqa: BLE001 - argparse's type error: the message is what matters
                raise ValueError(f"threshold: {exc}") from None
            search = self.infer.faithful
            if spec.faithful is not None and (search is None or search.ratio != spec.faithful):
                started = "" if search is None else f" (this run searches for faithful:{search.ratio:g})"
                raise ValueError("threshold: the faithful search is set when the run starts (--threshold "
                                 f"faithful[:R]){started}")
            return spec
        if name in ("alpha", "smooth"):
            number = _number(name, value)
            if not (0.0 <= number <= 1.0 if name == "alpha" else 0.0 <= number < 1.0):
                raise ValueError(f"{name} must be in [0, 1{']' if name == 'alpha' else ')'}")
            return number
        if name == "colormap":
            if value not in COLORMAPS:
                raise ValueError(f"colormap must be one of {', '.join(sorted(COLORMAPS))}")
            return value
        if name == "class_id":
            if value is None or value == "":
                return None
            if isinstance(value, str) and not value.strip().isdigit():
                return self._class_by_name(value)
            if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
                raise ValueError("class_id must be a class number or name, or null for each frame's top-1")
            classes = self.backend.classes
            if classes is not None and int(value) >= classes:
                raise ValueError(f"class_id must be below {classes} (the model's classes)")
            return int(value)
        if name == "hud":
            if value not in HUD_PLACES:
                raise ValueError(f"hud must be one of {', '.join(HUD_PLACES)}")
            return value
        if name in ("paused", "step"):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false")
            return value
        raise ValueError(f"unknown setting '{name}' (method, threshold, alpha, colormap, class_id, smooth, hud, "
                         "paused, step; and stream)")

    def _class_by_name(self, text: str) -> int:
        """The id of the class named `text`: a whole name, or one of its comma-separated names, or the one name
        that holds it (case ignored); a ValueError naming a few candidates otherwise."""
        wanted = text.strip().lower()
        names = [name.lower() for name in self.labels()]
        for index, name in enumerate(names):
            if wanted == name or wanted in (part.strip() for part in name.split(",")):
                return index
        holding = [index for index, name in enumerate(names) if wanted in name]
        if len(holding) == 1:
            return holding[0]
        shown = ", ".join(f"{i}: {self.labels()[i]}" for i in holding[:5])
        raise ValueError(f"class '{text}' is {'ambiguous: ' + shown if holding else 'not one of the model classes'}")

    def _set(self, name: str, value: Any, chosen: list[Stream]) -> None:  # noqa: C901 - one branch per setting
        """Set `name` to `value` where each of the `chosen` streams reads it: the backend (method, for all),
        the inference stage (class, smoothing), the painter (threshold, alpha, colours) and the render stage
        (HUD; paused and step on its gate: held before rendering, or one frame let through)."""
        if name == "method":
            self.backend.set_method(value)
        lut = colormap_lut(value) if name == "colormap" else None
        for stream in chosen:
            if name == "method":
                stream.render.method = value
            elif name == "class_id":
                self.infer.class_ids[stream.index] = value
                self.infer.faithful_tally[stream.index].explained = 0  # a new class: search on its next frame
            elif name == "smooth":
                if self.infer.smoothers:
                    self.infer.smoothers[stream.index].alpha = value
            elif name == "colormap":
                self.colormaps[stream.index] = value
                stream.painter.lut = lut
            elif name == "hud":
                stream.render.hud = value
            elif name == "paused":
                stream.render.gate.pause(value)
            elif name == "step":
                if value:
                    stream.render.gate.step()
            else:
                setattr(stream.painter, "spec" if name == "threshold" else name, value)
                if name == "threshold" and self.infer.faithful is not None:  # search only where it is shown
                    self.infer.faithful_tally[stream.index].searching = value.faithful is not None
                    self.infer.faithful_tally[stream.index].explained = 0

    def stats(self) -> dict[str, Any]:
        """The live figures: per stream its frames, fps now (since the last read) and overall, per-stage and
        end-to-end p50/p95 latency, drops, reconnects, the last classes and a detector's newest boxes; the
        process's RSS; the settings."""
        streams = [self._stream_stats(stream) for stream in self.streams]
        return {"time": time.time(), "running": self.running, "backend": self.backend.name,
                "model": self.backend.model_name, "layer": self.backend.layer, "controls": self.state(),
                "rss_mb": round(self.streams[0].telemetry.sample_memory(), 1), "streams": streams}

    def _stream_stats(self, stream: Stream) -> dict[str, Any]:
        telemetry, info = stream.telemetry, stream.source.info
        now, frames = time.perf_counter(), telemetry.frames_out
        then, frames_then, fps_then = self._rates.get(stream.index, (telemetry.started, 0, 0.0))
        fps_now = (frames - frames_then) / (now - then) if now - then >= 0.25 else fps_then
        if now - then >= 0.25:
            self._rates[stream.index] = (now, frames, fps_now)
        recent = list(stream.render.recent_classes)[-RECENT_CLASSES:]
        return {"index": stream.index, "source": info.name, "width": info.width, "height": info.height,
                "frames_in": telemetry.frames_in, "frames_out": frames, "total": info.frames if not info.live else None,
                "fps": round(fps_now, 2), "fps_mean": round(telemetry.fps(), 2), "dropped": stream.ring.dropped,
                "reconnects": stream.source.reconnects,
                "latency_ms": {"p50": round(telemetry.latency.percentile(50), 2),
                               "p95": round(telemetry.latency.percentile(95), 2)},
                "stages": {name: {"p50": round(h.percentile(50), 2), "p95": round(h.percentile(95), 2)}
                           for name, h in telemetry.stages.items() if h.count},
                "classes": [{"seq": seq, "class_id": int(class_id), "label": stream.render.label(class_id),
                             "score": round(float(score), 3)} for seq, class_id, score in recent],
                "threshold_value": stream.render.threshold_value,
                "controls": self.state(stream.index),
                "boxes": stream.render.latest_boxes()}  # a detector's newest boxes (frame pixels); None otherwise


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number") from None
