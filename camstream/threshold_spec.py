"""What part of a map to show: `ThresholdSpec` and its parser (`none`, `dynamic`, a percentage). Framework-free,
so `--help` and option parsing load no JIT; the kernels that apply a spec live in `camstream.kernels.threshold`."""

from __future__ import annotations

from dataclasses import dataclass

from camstream.errors import CamstreamError


@dataclass(frozen=True)
class ThresholdSpec:
    """How much of a map to show: `keep_percent` (top P %), `dynamic` search, or everything (both unset)."""

    keep_percent: float | None = None
    dynamic: bool = False
    min_area_percent: float = 5.0
    max_threshold: float = 0.5
    step: float = 0.05

    def __str__(self) -> str:
        if self.dynamic:
            return "dynamic"
        return "none" if self.keep_percent is None else f"{self.keep_percent:g}%"


def parse_threshold(text: str) -> ThresholdSpec:
    """`none`, `dynamic`, or a percentage P in (0, 100] of the map to keep (`10` or `10%`)."""
    word = text.strip().lower().rstrip("%")
    if word in ("none", "off", "100"):
        return ThresholdSpec()
    if word == "dynamic":
        return ThresholdSpec(dynamic=True)
    try:
        value = float(word)
    except ValueError:
        raise CamstreamError(f"bad threshold '{text}': give none, dynamic or a percentage like 10") from None
    if not 0 < value <= 100:
        raise CamstreamError(f"bad threshold '{text}': the percentage must be in (0, 100]")
    return ThresholdSpec(keep_percent=value)
