"""Copy ../shared/data/reference into the package, keeping ODbL rows separable.

Electricity Maps data is ODbL-1.0 (share-alike for derived databases); every other row is
CC-BY-4.0, MIT, Apache-2.0 or public domain. This script writes the ODbL rows and columns
into ``*_odbl.csv`` files beside the others so that a redistributor can drop them; greenlm
loads them when present and works without them.

Run from the repository root: ``python scripts/split_reference_data.py ../shared/data/reference``.
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

OUT = Path("src/greenlm/data")


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _write(path: Path, fields: list[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def main(src: Path) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in ("cpus.csv", "pue.csv"):
        shutil.copyfile(src / name, OUT / name)
    # greenlm's accelerators.csv extends the reference rows with sourced columns the estimator
    # needs (bf16 support, FP4 throughput, DGX node ratings, measured TPU power): copied only
    # when the package has none yet, so those columns are never dropped.
    if not (OUT / "accelerators.csv").exists():
        shutil.copyfile(src / "accelerators.csv", OUT / "accelerators.csv")

    # Countries: whole ODbL rows out; Electricity Maps alternate columns out.
    fields, rows = _rows(src / "grid_intensity_country.csv")
    em_cols = [c for c in fields if "electricitymaps" in c]
    keep = [c for c in fields if c not in em_cols]
    _write(OUT / "grid_intensity_country.csv", keep, [r for r in rows if "ODbL" not in r["license"]])
    _write(
        OUT / "grid_intensity_country_odbl.csv",
        fields,
        [r for r in rows if "ODbL" in r["license"]],
    )
    _write(
        OUT / "grid_intensity_country_alt_odbl.csv",
        ["iso3", *em_cols],
        [r for r in rows if any(r[c] for c in em_cols)],
    )

    # Sub-national: one row per region x source; split by licence.
    fields, rows = _rows(src / "grid_intensity_subnational.csv")
    _write(OUT / "grid_intensity_subnational.csv", fields, [r for r in rows if "ODbL" not in r["license"]])
    _write(OUT / "grid_intensity_subnational_odbl.csv", fields, [r for r in rows if "ODbL" in r["license"]])

    # Cloud regions: AWS/Azure intensities are Electricity Maps values (ODbL).
    fields, rows = _rows(src / "cloud_regions.csv")
    em_cols = [c for c in fields if "electricitymaps_20" in c]
    keep = [c for c in fields if c not in em_cols]
    is_em = [r for r in rows if "Electricity Maps" in r["intensity_source"]]
    other = [r for r in rows if "Electricity Maps" not in r["intensity_source"]]
    _write(OUT / "cloud_regions.csv", keep, other)
    _write(OUT / "cloud_regions_odbl.csv", fields, is_em)
    print(f"wrote {len(other)} non-ODbL and {len(is_em)} ODbL cloud regions")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/reference"))
