"""eval.md: the tables of `camstream eval`, in the spirit of the seed paper's Tables 7 and 8, with our
measured numbers and every method/threshold shown (nothing picked)."""

from __future__ import annotations

import numpy as np

from camstream.eval.baselines import BASELINE_NAMES, BASELINES, SIGNIFICANCE

FAITHFULNESS = (("road", "ROAD ↑"), ("road_morf", "MoRF ↓"), ("road_lerf", "LeRF ↑"), ("insertion_auc", "IAUC ↑"),
                ("deletion_auc", "DAUC ↓"), ("insertion_auc_normalised", "IAUC/p ↑"),
                ("deletion_auc_normalised", "DAUC/p ↓"), ("insertion_correlation", "IC ↑"),
                ("deletion_correlation", "DC ↓"), ("average_drop", "AD ↓"), ("increase_in_confidence", "IIC ↑"),
                ("adcc", "ADCC ↑"), ("max_sensitivity", "max-sens ↓"), ("max_sensitivity_normalised", "max-sens/‖Φ‖ ↓"))
LOCALISATION = (("pointing_game", "pointing ↑"), ("energy", "energy ↑"), ("iou", "IoU ↑"), ("dice", "Dice ↑"),
                ("precision", "precision ↑"), ("recall", "recall ↑"), ("boundary_f1", "boundary F1 ↑"))


NAMES = {"road": "ROAD", "road_morf": "ROAD MoRF", "road_lerf": "ROAD LeRF", "insertion_auc": "insertion AUC",
         "deletion_auc": "deletion AUC", "insertion_auc_normalised": "insertion AUC/p",
         "deletion_auc_normalised": "deletion AUC/p", "pointing_game": "pointing", "energy": "energy", "iou": "IoU"}
SMALL_SAMPLE = 20  # fewer images than this: intervals are wide and the paired tests have little power
SUMMARY = (("road", "ROAD ↑"), ("insertion_auc", "insertion AUC ↑"), ("deletion_auc", "deletion AUC ↓"),
           ("pointing_game", "pointing ↑"), ("max_sensitivity", "max-sensitivity ↓"))


def mean_interval(values: list[float]) -> tuple[float, float | None]:
    """The mean and the half-width of its 95 % confidence interval (Student's t; None for fewer than 2 values)."""
    data = np.asarray(values, dtype=np.float64)
    if len(data) < 2:
        return float(data.mean()) if len(data) else float("nan"), None
    from scipy import stats

    return float(data.mean()), float(stats.t.ppf(0.975, len(data) - 1) * data.std(ddof=1) / np.sqrt(len(data)))


def _summary(results: dict) -> list[str]:
    """One screen: per method, the full map's figures that matter with 95 % intervals over the images, and the
    label-aware pointing game beside the random and centred maps."""
    aware = results.get("label_aware") or {}
    own = bool(aware.get("pairs"))
    lines = ["## Summary (full maps; mean ± 95 % CI over the images)\n",
             "| method | " + " | ".join(title for _, title in SUMMARY)
             + (" | pointing, own class ↑" if own else "") + " | ms / image |",
             "|---|" + "---|" * (len(SUMMARY) + 1 + own)]
    for method, entry in results["methods"].items():
        cells = [_with_interval(entry.get("per_image", {}).get(key)) for key, _title in SUMMARY]
        if own:
            cells.append(f"{entry['label_aware']['pointing_game']:.3f}" if "label_aware" in entry else "n/a")
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {entry['ms_per_image']:.1f} |")
    lines += _baseline_rows(results.get("baselines") or {}, aware if own else {})
    if results.get("truth_coverage") is not None:
        lines.append(f"\nThe ground truth covers {results['truth_coverage']:.1%} of an image on average: a map that "
                     "lights everything scores about that on energy and IoU.")
    if own:
        lines.append(f"\nOwn-class pointing: {aware['pairs']} image–label pairs, boxes covering "
                     f"{aware['coverage']:.1%} of an image.")
    return lines


def coinciding_methods(results: dict) -> list[list[str]]:
    """Groups of methods whose summary figures are equal on every image (their maps coincide on this model)."""
    groups: list[list[str]] = []
    signatures: list[list[np.ndarray]] = []
    for method, entry in results["methods"].items():
        figures = [np.asarray(entry.get("per_image", {}).get(key) or [], dtype=np.float64) for key, _ in SUMMARY]
        if not any(len(values) for values in figures):
            continue
        for group, signature in zip(groups, signatures, strict=True):
            if all(a.shape == b.shape and np.allclose(a, b, rtol=0, atol=1e-9) for a, b in zip(signature, figures,
                                                                                               strict=True)):
                group.append(method)
                break
        else:
            groups.append([method])
            signatures.append(figures)
    return [group for group in groups if len(group) > 1]


def _verdicts(results: dict) -> list[str]:
    """One line per method saying, in words, on which figures it beats the best of the random, centred and
    constant maps (better on average and Wilcoxon p < 0.05 over the images) and on which it does not; then the
    coinciding methods, once; then the sample size where it is small."""
    lines = ["\n## Verdicts\n"]
    for method, entry in results["methods"].items():
        compared = entry.get("against_baselines") or {}
        beaten = [f"{NAMES[m]} ({_against(c)})" for m, c in compared.items() if c["beats"]]
        unbeaten = [f"{NAMES[m]} ({_against(c)})" for m, c in compared.items() if not c["beats"]]
        said = ([f"beats the baselines on {', '.join(beaten)}"] if beaten else []) + (
            [f"does not beat them on {', '.join(unbeaten)}"] if unbeaten else [])
        lines.append(f"- **{method}** {'; '.join(said) if said else 'was not set beside the baselines'}.")
    lines.append(f"- A method beats the baselines on a figure when it is better than the best of a random, a centred "
                 f"and a constant map on average and a Wilcoxon signed-rank test of the per-image differences gives "
                 f"p < {SIGNIFICANCE} (\"better on k of n\": the images where it did better).")
    for group in coinciding_methods(results):
        lines.append(f"- **{' and '.join(group)} coincide**: equal figures on every image (their maps are the same "
                     "on this model, as CAM's and Grad-CAM's are for a global-average-pool + linear head); the "
                     "tables list each, the plots draw one over the other.")
    if results["images"] < SMALL_SAMPLE:
        lines.append(f"- **Small sample: {results['images']} images.** The intervals are wide and the paired tests "
                     f"below have little power at this size (at least {SMALL_SAMPLE} images for a test that can tell "
                     "methods apart): read their p-values as indications, not findings.")
    return lines


def _against(compared: dict) -> str:
    """`0.620 against a centred map's 0.551, better on 20 of 24, p = 0.001`."""
    return (f"{compared['mean']:.3f} against {BASELINE_NAMES[compared['baseline']]}'s {compared['baseline_mean']:.3f}, "
            f"better on {compared['better']} of {compared['n']}, p = {compared['wilcoxon_p']:.2g}")


def _against_baselines(results: dict) -> list[str]:
    """The table behind the verdicts: each method and figure against the best baseline on it."""
    rows = [(method, metric, c) for method, entry in results["methods"].items()
            for metric, c in (entry.get("against_baselines") or {}).items()]
    if not rows:
        return []
    lines = ["\n## Against the baselines (full maps, paired across images)\n",
             "| method | figure | method's mean | best baseline | its mean | better / worse / n | Wilcoxon p | "
             "rank-biserial | beats it |", "|---|---|---|---|---|---|---|---|---|"]
    for method, metric, c in rows:
        lines.append(f"| {method} | {NAMES[metric]} | {c['mean']:.4f} | {c['baseline']} | {c['baseline_mean']:.4f} | "
                     f"{c['better']} / {c['worse']} / {c['n']} | {c['wilcoxon_p']:.3g} | {c['rank_biserial']:+.2f} | "
                     f"{'yes' if c['beats'] else 'no'} |")
    return lines


def _with_interval(values: list[float] | None) -> str:
    if not values:
        return "n/a"
    mean, half = mean_interval(values)
    return f"{mean:.3f}" + ("" if half is None else f" ± {half:.3f}")


def _baseline_rows(baselines: dict, aware: dict) -> list[str]:
    """The summary's rows for the baseline maps, scored as the methods' full maps are (`baselines`, eval's
    per-image figures of each), and against each box label's own class (`aware`, when scored)."""
    rows = []
    for kind in BASELINES:
        if kind not in baselines and not (aware.get("baselines") or {}).get(kind):
            continue
        cells = [_with_interval((baselines.get(kind) or {}).get(key)) if key in (baselines.get(kind) or {}) else ""
                 for key, _title in SUMMARY]
        if aware:
            own = (aware.get("baselines") or {}).get(kind)
            cells.append(f"{own['pointing_game']:.3f}" if own else "")
        rows.append(f"| *{kind} map* | " + " | ".join(cells) + " | |")
    return rows


def _table(results: dict, columns: tuple[tuple[str, str], ...]) -> list[str]:
    lines = ["| method | threshold | " + " | ".join(title for _, title in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for method, entry in results["methods"].items():
        for label, values in entry["variants"].items():
            cells = [f"{values[key]:.3f}" if values.get(key) is not None else "n/a" for key, _ in columns]
            lines.append(f"| {method} | {label} | " + " | ".join(cells) + " |")
    return lines


def _retained(results: dict) -> list[str]:
    """Ratios to the full map for scores ≥ 0; differences for the signed correlations."""
    ratios = ("insertion_auc", "adcc", "iou", "dice", "boundary_f1")
    changes = ("insertion_correlation", "deletion_correlation")
    lines = ["| method | threshold | " + " | ".join(f"{k} ×" for k in ratios) + " | "
             + " | ".join(f"{k} ±" for k in changes) + " |", "|---|---|" + "---|" * (len(ratios) + len(changes))]
    for method, entry in results["methods"].items():
        for label, values in entry["variants"].items():
            if "retained" in values:
                cells = [f"{values['retained'][k]:.2f}" if k in values["retained"] else "n/a" for k in ratios]
                cells += [f"{values['change'][k]:+.3f}" if k in values.get("change", {}) else "n/a" for k in changes]
                lines.append(f"| {method} | {label} | " + " | ".join(cells) + " |")
    return lines


def _statistics(results: dict) -> list[str]:
    lines = ["| method | threshold | metric | mean diff | t p | Wilcoxon p | d_z | rank-biserial |",
             "|---|---|---|---|---|---|---|---|"]
    for method, entry in results["methods"].items():
        for label, tests in entry["statistics"].items():
            for metric, s in tests.items():
                if "t_p" in s:
                    dz = "n/a" if s["cohens_dz"] is None else f"{s['cohens_dz']:+.2f}"
                    lines.append(f"| {method} | {label} | {metric} | {s['mean_difference']:+.4f} | {s['t_p']:.3g} | "
                                 f"{s['wilcoxon_p']:.3g} | {dz} | {s['rank_biserial']:+.2f} |")
    return lines


def _between(results: dict) -> list[str]:
    between = results.get("between_methods") or {}
    if not between:
        return []
    lines = [f"\n## Methods against {between['reference']} (full maps, paired across images)\n",
             "| method | metric | mean diff | t p | Wilcoxon p | d_z |", "|---|---|---|---|---|---|"]
    for method, tests in between.items():
        if method == "reference":
            continue
        for metric, s in tests.items():
            if "t_p" in s:
                dz = "n/a" if s["cohens_dz"] is None else f"{s['cohens_dz']:+.2f}"
                lines.append(f"| {method} | {metric} | {s['mean_difference']:+.4f} | {s['t_p']:.3g} | "
                             f"{s['wilcoxon_p']:.3g} | {dz} |")
            else:
                lines.append(f"| {method} | {metric} | {s['mean_difference']:+.4f} | equal on every image | | |")
    return lines


def _temporal(results: dict) -> list[str]:
    rows = [(m, e["temporal"]) for m, e in results["methods"].items() if "temporal" in e]
    if not rows:
        return []
    video = results["video"]
    video_class = results.get("video_class_id")
    lines = [f"\n## Temporal stability on {video['frames']} frames of `{video['path']}`\n",
             "Map change per unit of image change between consecutive frames (lower is steadier), paired with "
             "insertion AUC on the same clip (higher is more faithful) and the lag the smoothing adds, so that "
             "steadiness bought by lagging, or by a map that never moves, shows. Each frame explained for "
             f"{'class ' + str(video_class) if video_class is not None else 'its own top-1'}; smoothed = the "
             f"pipeline's `--smooth {video['smooth']}`; departure = mean |smoothed − raw|.\n",
             "| method | instability raw | smoothed | insertion AUC raw | smoothed | lag (frames) | departure |",
             "|---|---|---|---|---|---|---|"]
    for method, t in rows:
        lines.append(f"| {method} | {t['raw']['temporal_instability']:.3f} | "
                     f"{t['smoothed']['temporal_instability']:.3f} | {t['raw'].get('insertion_auc', 0):.3f} | "
                     f"{t['smoothed'].get('insertion_auc', 0):.3f} | {t['smoothed'].get('lag_frames', 'n/a')} | "
                     f"{t['smoothing_departure']:.4f} |")
    constant = rows[0][1].get("constant")
    if constant:
        lines.append(f"| *constant map* | {constant['temporal_instability']:.3f} | | "
                     f"{constant['insertion_auc']:.3f} | | | |")
    return lines


def _label_aware(results: dict) -> list[str]:
    aware = results.get("label_aware")
    if not aware or not aware["pairs"]:
        return []
    columns = (("pointing_game", "pointing ↑"), ("energy_in_box", "energy in box ↑"), ("iou", "IoU (dynamic) ↑"),
               ("precision", "precision (dynamic) ↑"))
    skipped = ", ".join(f"{label} ({n})" for label, n in aware["skipped_labels"].items()) or "none"
    lines = [f"\n## Localisation per box label ({aware['pairs']} image–label pairs on {aware['images']} images)\n",
             "Each label's boxes against the map of that label's own ImageNet class (the best-scoring of the ids it "
             f"maps to). The boxes cover **{aware['coverage']:.1%}** of an image on average: a map that lights "
             "everything scores about that, and the random and centred maps below are what a method must beat. "
             f"Labels with no ImageNet counterpart, skipped (boxes): {skipped}.\n",
             "| map | " + " | ".join(title for _, title in columns) + " |", "|---|" + "---|" * len(columns)]
    rows = [(method, entry["label_aware"]) for method, entry in results["methods"].items() if "label_aware" in entry]
    rows += [(f"*{kind} baseline*", scores) for kind, scores in aware["baselines"].items()]
    for name, scores in rows:
        lines.append(f"| {name} | " + " | ".join(f"{scores[key]:.3f}" for key, _ in columns) + " |")
    return lines


def _computed_by(results: dict) -> str:
    """Which backend's methods were scored, and what computed them."""
    backend = results.get("backend", "torch")
    engines = sorted({entry.get("computed_by", backend) for entry in results["methods"].values()})
    return f"own methods of the {backend} backend, computed by {' and '.join(engines)}"


def _scoring(results: dict) -> str:
    """What the model passes cost: their count and speed say how busy the machine was."""
    scoring = results.get("scoring")
    if not scoring:
        return ""
    return (f", of which {scoring['seconds']} s scoring {scoring['images']} perturbed images on "
            f"{results.get('runtime', 'torch')} at {scoring['ms_per_image']} ms each")


def _skipped_files(results: dict) -> str:
    """' N files skipped (name: reason; …).' when some could not be read or were damaged, else ''."""
    skipped = results.get("skipped_files") or []
    if not skipped:
        return ""
    listed = "; ".join(f"{entry['file']}: {entry['reason']}" for entry in skipped[:5])
    more = f"; and {len(skipped) - 5} more (eval.json)" if len(skipped) > 5 else ""
    return f" **{len(skipped)} file(s) skipped** ({listed}{more})."


def _floor(results: dict) -> str:
    floor = results.get("normalised_floor")
    if not floor:
        return ""
    left = (f"leave out the {floor['excluded']} image{'s' * (floor['excluded'] != 1)} whose class scores below "
            f"{floor['floor']:g} on the whole image" if floor["excluded"] else
            f"would leave out images whose class scores below {floor['floor']:g} on the whole image (none here)")
    return f" IAUC/p and DAUC/p {left}: a ratio to a near-zero score is noise, not a figure."


def _regions(results: dict) -> list[str]:
    """Each threshold's shown region on its own (the rest black): its area and the share of the whole image's
    score it keeps — the faithful threshold's choice beside the fixed and dynamic ones."""
    rows = []
    for method, entry in results["methods"].items():
        for label, values in entry["variants"].items():
            if values.get("region_score_share") is None:
                continue
            faithful = (entry.get("faithful") or {}).get(label)
            reached = f"{faithful['reached']} of {faithful['images']} reached {faithful['ratio']:g}" if faithful else ""
            rows.append(f"| {method} | {label} | {values['region_area']:.1%} | {values['region_score_share']:.1%} | "
                        f"{reached} |")
    if not rows:
        return []
    return ["\n## What each threshold's region keeps on its own (the rest black, deletion's baseline)\n",
            "`faithful:R` shows, per image, the smallest top P % (of 1, 2, 5, 10, 20, 30, 50) whose region alone keeps "
            "≥ R × the whole image's score, or 50 % flagged when none does (or when the class scores below 0.05, "
            "where no share means anything; such images are left out of 'score kept'); the goal is ≥ 95 % of the "
            "score at an area no larger than dynamic's.\n",
            "| method | threshold | area shown | score kept | faithful |", "|---|---|---|---|---|", *rows]


def _pointing(results: dict) -> str:
    pointing = results.get("pointing")
    if not pointing or not results.get("with_truth"):
        return ""
    where = "each original image, against its truth at its own size" if pointing["scale"] == "image" else (
        "the model input (--pointing-scale input)")
    return f" Pointing game: a hit within {pointing['tolerance_px']:g} px of the truth on {where}."


def markdown(results: dict) -> str:
    """The whole report."""
    lines = [f"# camstream eval\n\n{results['images']} images ({results['with_truth']} with ground truth) from "
             f"`{results['data']}`, model {results['model']} ({_computed_by(results)}), "
             f"class {results['class_id'] or 'top-1'}; "
             f"{results['elapsed_s']} s{_scoring(results)}.{_skipped_files(results)} Insertion/deletion in "
             f"{results['insertion_deletion_steps']} steps; "
             f"max-sensitivity: {results['max_sensitivity']['samples']} draws of U[±"
             f"{results['max_sensitivity']['radius']}] noise.{_pointing(results)}{_floor(results)}\n",
             *_summary(results), *_verdicts(results),
             *_against_baselines(results), "\n## Faithfulness and robustness\n",
             *_table(results, FAITHFULNESS), "\n## Localisation against the ground truth (all boxes or masks "
             "together, against the explained class)\n",
             *_table(results, LOCALISATION), *_label_aware(results),
             "\n## What each threshold keeps: × a fraction of the full map's score, ± a difference from it (signed "
             "scores); the pointing game is left out, a threshold keeps the map's maximum by construction\n",
             *_retained(results), *_regions(results),
             "\n## Cost\n", "| method | ms per image | peak RSS above start (MB) | not computed |", "|---|---|---|---|"]
    for method, entry in results["methods"].items():
        lines.append(f"| {method} | {entry['ms_per_image']:.1f} | {entry['peak_rss_mb']:.1f} | "
                     f"{entry.get('not_computed', '')} |")
    for method, reason in results.get("skipped", {}).items():
        lines.append(f"| {method} | skipped | | {reason} |")
    lines += _temporal(results)
    lines += ["\n## Thresholded vs full map, paired across images\n", *_statistics(results)]
    lines += _between(results)
    if results.get("plots"):
        lines += ["\n## Plots\n", *[f"![{name}]({name})" for name in results["plots"]]]
    elif results.get("plots_skipped"):
        lines += ["\n" + results["plots_skipped"]]
    return "\n".join(lines) + "\n"
