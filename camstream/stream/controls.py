"""What the dashboard may change in a running pipeline, and the live figures it shows.

`LiveControls.apply` takes a dict of settings — method, threshold, alpha, colormap, class_id, smooth, hud —
checks every one before changing any, then sets them where each stage reads it on its next frame: the
painters (threshold, alpha, colormap), the render stages (HUD), the inference stage (class, smoothing) and the
backend (method, taken before its next batch). `LiveControls.stats` is `/stats`.
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
        self.colormap = streams[0].config.colormap
        self.running = True
        self._rates: dict[int, tuple[float, int, float]] = {}  # stream → (time, frames out, fps) at the last read

    def state(self) -> dict[str, Any]:
        """The settings as they are now, and what each may be set to."""
        painter, render = self.streams[0].painter, self.streams[0].render
        return {"method": self.backend.method, "methods": self.backend.methods(), "threshold": str(painter.spec),
                "alpha": painter.alpha, "colormap": self.colormap, "colormaps": sorted(COLORMAPS),
                "class_id": self.infer.class_id, "classes": self.backend.classes,
                "smooth": self.infer.smoothers[0].alpha if self.infer.smoothers else 0.0, "hud": render.hud,
                "huds": list(HUD_PLACES)}

    def apply(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Check every setting in `changes`, then apply them all; returns `state()`. A ValueError names the
        first bad one (nothing is changed then)."""
        checked = {name: self._check(name, value) for name, value in changes.items()}
        for name, value in checked.items():
            self._set(name, value)
        return self.state()

    def _check(self, name: str, value: Any) -> Any:  # noqa: C901 - one branch per setting, each a line or two
        if name == "method":
            if value not in self.backend.methods():
                raise ValueError(f"method must be one of {', '.join(self.backend.methods())}")
            return value
        if name == "threshold":
            try:
                return parse_threshold(str(value))
            except Exception as exc:  # noqa: BLE001 - argparse's type error: the message is what matters
                raise ValueError(f"threshold: {exc}") from None
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
            if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
                raise ValueError("class_id must be a class number, or null for each frame's top-1")
            classes = self.backend.classes
            if classes is not None and int(value) >= classes:
                raise ValueError(f"class_id must be below {classes} (the model's classes)")
            return int(value)
        if name == "hud":
            if value not in HUD_PLACES:
                raise ValueError(f"hud must be one of {', '.join(HUD_PLACES)}")
            return value
        raise ValueError(f"unknown setting '{name}' (method, threshold, alpha, colormap, class_id, smooth, hud)")

    def _set(self, name: str, value: Any) -> None:
        if name == "method":
            self.backend.set_method(value)
            for stream in self.streams:
                stream.render.method = value
        elif name == "class_id":
            self.infer.class_id = value
        elif name == "smooth":
            for smoother in self.infer.smoothers:
                smoother.alpha = value
        elif name == "colormap":
            self.colormap = value
            lut = colormap_lut(value)
            for stream in self.streams:
                stream.painter.lut = lut
        else:
            for stream in self.streams:
                if name == "hud":
                    stream.render.hud = value
                else:
                    setattr(stream.painter, "spec" if name == "threshold" else name, value)

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
                "boxes": stream.render.latest_boxes()}  # a detector's newest boxes (frame pixels); None otherwise


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number") from None
