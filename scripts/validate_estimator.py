"""Regenerate docs/validation.md and greenlm/estimate/fitted.py: the estimator, cross-validated.

Usage: ``python scripts/validate_estimator.py [--data tests/data/footprints_dev.csv]
[--serving-data tests/data/inference_dev.csv] [--out docs/validation.md]
[--fitted src/greenlm/estimate/fitted.py] [--no-write-fitted] [--check]``.

Training rows are validated in modes A, B and C, serving rows leave-one-model-out (see
``greenlm.estimate.validation``). The constants fitted on every row are written to
``fitted.py`` (the shipped defaults) unless ``--no-write-fitted``; pass other data files to
validate on them (the shipped constants are then left alone unless ``--fitted`` names a
file). ``--check`` exits 1 when a figure is past its threshold (the test's check).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from greenlm.estimate import validation as v
from greenlm.estimate import validation_serving as vs

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TRAIN = ROOT / "tests" / "data" / "footprints_dev.csv"
DEFAULT_SERVE = ROOT / "tests" / "data" / "inference_dev.csv"
DEFAULT_FITTED = ROOT / "src" / "greenlm" / "estimate" / "fitted.py"


def _rel(p: str) -> str:
    try:
        return str(Path(p).resolve().relative_to(ROOT))
    except ValueError:
        return p


def main(argv: list[str] | None = None) -> int:
    """Write the validation page (and the fitted constants); with ``--check``, fail on a regression."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(DEFAULT_TRAIN))
    ap.add_argument("--serving-data", default=str(DEFAULT_SERVE))
    ap.add_argument("--out", default=str(ROOT / "docs" / "validation.md"))
    ap.add_argument("--fitted", default=None, help="where to write the fitted constants")
    ap.add_argument("--no-write-fitted", action="store_true")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    sources = (_rel(args.data), _rel(args.serving_data))
    report = v.validate(v.read_rows(args.data))
    serve_rows = vs.read_rows(args.serving_data)
    serving = vs.validate(serve_rows)
    sensitivity = {0.5: vs.validate(serve_rows, 0.5), 1.0: serving, 2.0: vs.validate(serve_rows, 2.0)}
    harder = {k: vs.regrouped(serve_rows, k) for k in ("vendor", "gpu")}
    page = v.render_markdown(report, serving, sensitivity, sources, harder)
    Path(args.out).write_text(page, encoding="utf-8")
    print(f"wrote {args.out}")
    defaults_data = Path(args.data).resolve() == DEFAULT_TRAIN and Path(args.serving_data).resolve() == DEFAULT_SERVE
    fitted = args.fitted or (str(DEFAULT_FITTED) if defaults_data else None)
    if fitted and not args.no_write_fitted:
        Path(fitted).write_text(v.render_fitted(report, serving, sources), encoding="utf-8")
        print(f"wrote {fitted}")
    summary = v.summarise(report, serving)
    for key, value in summary.figures.items():
        target = v.TARGETS.get(key)
        shown = "n/a" if value is None else f"{value:.4g}"
        t = f" (target {target:g})" if target is not None else ""
        print(f"{key:<22} {shown:>8}  threshold {v.THRESHOLDS[key]:g}{t}")
    failures = summary.failures(v.THRESHOLDS)
    for f in failures:
        print(f"REGRESSED {f}")
    return 1 if (failures and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
