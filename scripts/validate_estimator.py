"""Regenerate docs/validation.md: the estimator against published footprints.

Usage: ``python scripts/validate_estimator.py [--data tests/data/footprints_dev.csv]
[--out docs/validation.md] [--check]``. ``--check`` exits 1 when a mode's MAPE is past its
threshold (the same check as tests/estimate/test_validation.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from greenlm.estimate.validation import MODES, THRESHOLDS_PCT, read_rows, render_markdown, validate

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    """Write the validation page; with ``--check``, also fail on a regression."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(ROOT / "tests" / "data" / "footprints_dev.csv"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "validation.md"))
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    report = validate(read_rows(args.data))
    try:
        source = str(Path(args.data).resolve().relative_to(ROOT))
    except ValueError:
        source = args.data
    Path(args.out).write_text(render_markdown(report, THRESHOLDS_PCT, source), encoding="utf-8")
    failed = False
    for mode in MODES:
        for qty in ("energy", "co2"):
            mape, n = report.mape(mode, qty)
            limit = THRESHOLDS_PCT[(mode, qty)]
            flag = ""
            if mape is not None and mape > limit:
                flag, failed = "  REGRESSED", True
            shown = "n/a" if mape is None else f"{mape:.2f}%"
            print(f"mode {mode} {qty:<6} MAPE {shown:>8} over {n} rows (threshold {limit}%){flag}")
    print(f"wrote {args.out}")
    return 1 if (failed and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
