"""Whether a bench run can be believed: a busy machine or a figure that cannot be true makes it invalid.

Explaining a frame costs at least its plain inference, so an explained/plain ratio below 1 is noise (below
`IMPOSSIBLE_RATIO`, the run is flagged); a pipeline cannot run faster than its inference alone (a fraction of
that ceiling above `CEILING_SLACK`); and a load average above half the cores before or after the run means other
work shared the CPU.
"""

from __future__ import annotations

import os

IMPOSSIBLE_RATIO = 0.95
CEILING_SLACK = 1.05
BUSY_LOAD_PER_CORE = 0.5


def load_average() -> float | None:
    """The 1-minute load average, where the system has one."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def verdict(results: dict) -> dict:
    """{"valid": bool, "warnings": [str, …]} for a bench run's results."""
    warnings = _load_warnings(results.get("system", {}))
    for entry in results.get("explainers", []):
        for method, value in entry.get("methods", {}).items():
            if value["ratio_to_plain"] < IMPOSSIBLE_RATIO:
                warnings.append(f"{entry['model']} batch {entry['batch']}: {method} explained faster than plain "
                                f"inference ({value['ratio_to_plain']:.2f}×), which cannot be: noise")
    for name, run in (results.get("pipeline") or {}).items():
        if run.get("fraction_of_ceiling", 0.0) > CEILING_SLACK:
            warnings.append(f"pipeline {name}: {run['fraction_of_ceiling']:.2f} of the inference ceiling, which "
                            "cannot be: the ceiling was measured on a busier moment")
    for setting in (results.get("backends") or {}).get("settings", []):
        for name, row in setting["ms_per_frame"].items():
            explained = not name.endswith((" plain", " float + numpy"))  # the baselines may beat plain
            if explained and row["ratio_to_own_plain"] < IMPOSSIBLE_RATIO:
                warnings.append(f"backends {setting['threads']} thread(s), batch {setting['batch']}: {name} "
                                f"{row['ratio_to_own_plain']:.2f}× its own plain, which cannot be: noise")
    return {"valid": not warnings, "warnings": warnings}


def _load_warnings(system: dict) -> list[str]:
    cores = system.get("cores") or 1
    loads = [system.get(key) for key in ("load_before", "load_after")]
    busy = [load for load in loads if load is not None and load > BUSY_LOAD_PER_CORE * cores]
    if not busy:
        return []
    return [f"the machine was busy: load average {max(busy):.2f} on {cores} cores (above "
            f"{BUSY_LOAD_PER_CORE * cores:.1f}); times and ratios are unreliable, run again on a quiet machine"]


def markdown(trust: dict) -> list[str]:
    """A loud banner when the run is not valid; nothing otherwise."""
    if trust["valid"]:
        return ["Run valid: the machine was quiet and no figure is impossible.\n"]
    return ["> **WARNING: this run is not trustworthy** (`\"valid\": false` in bench.json):", ">",
            *[f"> - {warning}" for warning in trust["warnings"]], ""]
