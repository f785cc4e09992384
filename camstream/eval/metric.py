"""The metric base class: declared properties plus a batched `__call__` returning one score per sample."""

from __future__ import annotations

from typing import ClassVar

import numpy as np


class Metric:
    """A score per sample. Subclasses set the class attributes and implement `__call__`."""

    name: ClassVar[str]
    higher_is_better: ClassVar[bool]
    category: ClassVar[str]  # "localisation" or "faithfulness"
    value_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    reads_values: ClassVar[bool] = False  # localisation: scored on the map's values, not the mask of what it shows

    def describe(self) -> dict:
        """What a report says about this metric."""
        return {"name": self.name, "higher_is_better": self.higher_is_better, "category": self.category,
                "range": list(self.value_range)}


def top_fraction_masks(maps: np.ndarray, keep_fraction: float) -> np.ndarray:
    """Boolean masks keeping each map's top `keep_fraction` of pixels (ties broken by position)."""
    batch = maps.shape[0]
    flat = maps.reshape(batch, -1)
    keep = max(1, int(round(keep_fraction * flat.shape[1])))
    order = np.argsort(-flat, axis=1, kind="stable")[:, :keep]
    masks = np.zeros_like(flat, dtype=bool)
    np.put_along_axis(masks, order, True, axis=1)
    return masks.reshape(maps.shape)
