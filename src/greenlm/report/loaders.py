"""Inputs of reports and dashboard pages that are not runs: optimize results, lifecycle plans.

Library functions (the ``greenlm report`` command and the dashboard's optimize and lifecycle
pages call them); they raise :class:`~greenlm.errors.ConfigError` with what was expected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from greenlm.errors import ConfigError, GreenlmError

#: File names a results directory is searched for, in order (``greenlm optimize --report DIR``).
OPTIMIZE_FILES = ("optimize.json", "results.json")


def load_optimize(path: str | Path) -> dict[str, Any]:
    """The optimize ``--json`` object from a results directory or a JSON file."""
    p = Path(path).expanduser()
    candidates = [p] if p.is_file() else [p / n for n in OPTIMIZE_FILES]
    for c in candidates:
        if c.is_file():
            try:
                data = json.loads(c.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise ConfigError(f"Cannot read optimize results {c}: {e}") from e
            if not isinstance(data, dict) or "variants" not in data:
                raise ConfigError(
                    f"{c} is not an optimize results file (no 'variants'): "
                    "write one with `greenlm optimize --report DIR`."
                )
            return data
    raise ConfigError(
        f"No optimize results in {p}: expected {' or '.join(OPTIMIZE_FILES)} "
        "(written by `greenlm optimize --report DIR`)."
    )


def estimate_plan(path: str, locations: str | None = None, weights: str | None = None) -> list[dict[str, Any]]:
    """Lifecycle estimate of a plan (and a location comparison) as JSON objects."""
    try:
        from greenlm import estimate
    except ImportError as e:
        raise GreenlmError("greenlm estimate is not available in this installation") from e
    plan = estimate.load_plan(path)
    out = [estimate.lifecycle(plan, weights).to_dict()]
    if locations:
        locs = [x.strip() for x in locations.split(",") if x.strip()]
        out.append(estimate.compare(plan, locs).to_dict())
    return out
