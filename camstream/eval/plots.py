"""PNG plots of an eval run (matplotlib, an optional extra: `pip install 'camstream[plots]'`)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import cv2  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# One look per method — colour, line style and marker — so that two methods with identical curves (CAM and
# Grad-CAM on a GAP + linear head) both stay visible; markers start at different points for the same reason.
STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1)), "v"), ((0, (1, 1)), "P"))


def style(index: int) -> dict:
    """Matplotlib keywords of the `index`-th method's look."""
    line, marker = STYLES[index % len(STYLES)]
    return {"color": f"C{index % 10}", "linestyle": line, "marker": marker, "markersize": 4,
            "markevery": (index % 3, 3)}


def precision_recall(results: dict, path: str) -> None:
    """Per method: the top-k % curve of the full map, and a marker per evaluated threshold."""
    figure, axes = plt.subplots(figsize=(6, 5))
    for index, (method, entry) in enumerate(results["methods"].items()):
        if "precision_recall" not in entry:
            continue
        curve = entry["precision_recall"]
        (line,) = axes.plot(curve["recall"], curve["precision"], label=method, **style(index))
        for label, values in entry["variants"].items():
            if label != "none" and "precision" in values:
                axes.scatter(values["recall"], values["precision"], color=line.get_color(), s=18)
                axes.annotate(label, (values["recall"], values["precision"]), fontsize=7,
                              xytext=(3, 3), textcoords="offset points")
    axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1),
             title="Precision–recall of the top-k % map (markers: thresholds)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def insertion_deletion(results: dict, path: str) -> None:
    """Mean insertion and deletion curves per method (its own colour, line style and marker), full map (thick) and
    10 % threshold (thin, faded)."""
    figure, (insert_axes, delete_axes) = plt.subplots(1, 2, figsize=(11, 4.5))
    for index, (method, entry) in enumerate(results["methods"].items()):
        for label, width, alpha in (("none", 2.0, 1.0), ("10", 1.0, 0.55)):
            if label not in entry["curves"]:
                continue
            for axes, kind in ((insert_axes, "insertion"), (delete_axes, "deletion")):
                curve = entry["curves"][label][kind]
                x = np.linspace(0, 1, len(curve))
                name = f"{method} ({'full' if label == 'none' else label + ' %'})"
                axes.plot(x, curve, label=name, linewidth=width, alpha=alpha, **style(index))
    for axes, kind in ((insert_axes, "insertion"), (delete_axes, "deletion")):
        axes.set(xlabel=f"fraction of pixels {'inserted' if kind == 'insertion' else 'deleted'}",
                 ylabel="target probability (mean)", title=f"{kind.capitalize()} curves", xlim=(0, 1))
    insert_axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def heatmap_grid(examples: dict[str, np.ndarray], images: np.ndarray, names: list[str], path: str,
                 shapes: list[tuple[int, int]] | None = None, truths: list[np.ndarray | None] | None = None) -> None:
    """Rows: example images; columns: the image, then each method's full map over it. With the originals'
    `shapes` (height, width), each row is drawn at its image's own aspect ratio, not the model's square; with
    `truths` (a boolean mask at the model's size per row, or None), the ground truth is outlined in white on
    every panel of its row."""
    rows, columns = len(images), 1 + len(examples)
    figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.2 * rows), squeeze=False)
    for row in range(rows):
        height = images[row].shape[0]
        width = height if shapes is None else max(1, round(height * shapes[row][1] / shapes[row][0]))

        def upright(picture: np.ndarray, size: tuple[int, int] = (width, height)) -> np.ndarray:
            return cv2.resize(np.ascontiguousarray(picture, dtype=np.float32), size, interpolation=cv2.INTER_LINEAR)

        shown = upright(images[row]).clip(0, 1)
        axes[row, 0].imshow(shown)
        axes[row, 0].set_title(names[row][:18], fontsize=7)
        for column, (method, maps) in enumerate(examples.items(), start=1):
            axes[row, column].imshow(shown)
            axes[row, column].imshow(upright(maps[row]), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            if row == 0:
                axes[row, column].set_title(method, fontsize=8)
        truth = truths[row] if truths is not None and row < len(truths) else None
        if truth is not None and truth.any():
            outline = upright(truth.astype(np.float32))
            for axis in axes[row]:
                axis.contour(outline, levels=[0.5], colors="white", linewidths=1.0)
    for axis in axes.flat:
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_plots(results: dict, examples: dict[str, np.ndarray], images: np.ndarray, names: list[str],
                out_dir: str, shapes: list[tuple[int, int]] | None = None,
                truths: list[np.ndarray | None] | None = None) -> list[str]:
    """Write the PNGs into `out_dir`; returns their file names."""
    written = []
    if any("precision_recall" in entry for entry in results["methods"].values()):
        precision_recall(results, os.path.join(out_dir, "pr_curves.png"))
        written.append("pr_curves.png")
    insertion_deletion(results, os.path.join(out_dir, "insertion_deletion.png"))
    heatmap_grid(examples, images, names, os.path.join(out_dir, "heatmaps.png"), shapes, truths)
    return [*written, "insertion_deletion.png", "heatmaps.png"]
