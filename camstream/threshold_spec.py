"""What part of a map to show: `ThresholdSpec` and its parser (`none`, `dynamic`, a percentage, `faithful[:R]`).
Framework-free, so `--help` and option parsing load no JIT; the kernels that apply a spec live in
`camstream.kernels.threshold` (the faithful search in `camstream.explain.faithful`)."""

from __future__ import annotations

from dataclasses import dataclass

from camstream.errors import CamstreamError


@dataclass(frozen=True)
class ThresholdSpec:
    """How much of a map to show: `keep_percent` (top P %), `dynamic` search, `faithful` (the smallest top P % whose
    region alone keeps ≥ R × the class score, R = `faithful`; `camstream.explain.faithful`), or everything (all
    unset)."""

    keep_percent: float | None = None
    dynamic: bool = False
    faithful: float | None = None
    min_area_percent: float = 5.0
    max_threshold: float = 0.5
    step: float = 0.05

    def __post_init__(self) -> None:
        if (self.keep_percent is not None) + self.dynamic + (self.faithful is not None) > 1:
            raise ValueError("a threshold is one of keep_percent, dynamic or faithful, not several")

    def __str__(self) -> str:
        if self.faithful is not None:
            return f"faithful:{self.faithful:g}"
        if self.dynamic:
            return "dynamic"
        return "none" if self.keep_percent is None else f"{self.keep_percent:g}%"


FAITHFUL_RATIO = 0.95  # `faithful` alone: the kept region must keep 95 % of the class score


def parse_threshold(text: str) -> ThresholdSpec:
    """`none`, `dynamic`, a percentage P in (0, 100] of the map to keep (`10` or `10%`), or `faithful[:R]` (R in
    (0, 1], default 0.95)."""
    word = text.strip().lower().rstrip("%")
    if word in ("none", "off", "100"):
        return ThresholdSpec()
    if word == "dynamic":
        return ThresholdSpec(dynamic=True)
    if word == "faithful" or word.startswith("faithful:"):
        ratio = word.partition(":")[2]
        try:
            value = float(ratio) if ratio else FAITHFUL_RATIO
        except ValueError:
            value = -1.0
        if not 0 < value <= 1:
            raise CamstreamError(f"bad threshold '{text}': faithful:R takes a share R of the class score in (0, 1], "
                                 "such as faithful:0.95")
        return ThresholdSpec(faithful=value)
    try:
        value = float(word)
    except ValueError:
        raise CamstreamError(f"bad threshold '{text}': give none, dynamic, faithful[:R] or a percentage like "
                             "10") from None
    if not 0 < value <= 100:
        raise CamstreamError(f"bad threshold '{text}': the percentage must be in (0, 100]")
    return ThresholdSpec(keep_percent=value)
