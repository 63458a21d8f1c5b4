"""CSV in CodeCarbon's ``emissions.csv`` column layout, plus greenlm's provenance columns.

The first columns are exactly CodeCarbon's (``EmissionsData``, v3), in its units, so tools
that read CodeCarbon output read this file: ``duration`` s, ``emissions`` kg CO2e (facility
energy x intensity), ``emissions_rate`` kg/s, ``*_power`` W (mean over the run),
``*_energy`` and ``energy_consumed`` kWh of IT energy (cpu + gpu + ram, before PUE; ``pue``
is its own column). greenlm's columns follow, prefixed ``greenlm_``.
"""

from __future__ import annotations

import csv
import io
import os
import platform
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from greenlm.errors import ConfigError
from greenlm.store.records import StoredRun
from greenlm.tracking.result import ComponentEnergy, RunResult

CODECARBON_COLUMNS = (
    "timestamp",
    "project_name",
    "run_id",
    "experiment_id",
    "duration",
    "emissions",
    "emissions_rate",
    "cpu_power",
    "gpu_power",
    "ram_power",
    "cpu_energy",
    "gpu_energy",
    "ram_energy",
    "energy_consumed",
    "water_consumed",
    "country_name",
    "country_iso_code",
    "region",
    "cloud_provider",
    "cloud_region",
    "os",
    "python_version",
    "codecarbon_version",
    "cpu_count",
    "cpu_model",
    "gpu_count",
    "gpu_model",
    "longitude",
    "latitude",
    "ram_total_size",
    "tracking_mode",
    "cpu_utilization_percent",
    "gpu_utilization_percent",
    "ram_utilization_percent",
    "ram_used_gb",
    "on_cloud",
    "pue",
    "wue",
)
GREENLM_COLUMNS = (
    "greenlm_status",
    "greenlm_provenance",
    "greenlm_cpu_provenance",
    "greenlm_gpu_provenance",
    "greenlm_ram_provenance",
    "greenlm_energy_low_kwh",
    "greenlm_energy_high_kwh",
    "greenlm_facility_energy_kwh",
    "greenlm_co2e_g",
    "greenlm_intensity_g_per_kwh",
    "greenlm_intensity_source",
    "greenlm_intensity_year",
    "greenlm_location_defaulted",
    "greenlm_cost",
    "greenlm_currency",
    "greenlm_steps",
    "greenlm_warnings",
)
COLUMNS = CODECARBON_COLUMNS + GREENLM_COLUMNS
J_PER_KWH = 3.6e6


def row(run: RunResult) -> dict[str, Any]:
    """One CSV row from a run's result."""
    by_kind: dict[str, list[ComponentEnergy]] = {"cpu": [], "gpu": [], "ram": []}
    for c in run.components:
        by_kind.setdefault(c.kind, []).append(c)
    dur = run.duration_s

    def e_kwh(kind: str) -> float:
        return sum(c.energy_j for c in by_kind[kind]) / J_PER_KWH

    def p_w(kind: str) -> float:
        return sum(c.energy_j for c in by_kind[kind]) / dur if dur > 0 else 0.0

    def prov(kind: str) -> str:
        return ",".join(sorted({c.provenance for c in by_kind[kind] if c.provenance}))

    loc = run.location
    code = str(loc.get("code") or "")
    cpu_model = next((str(m.get("cpu")) for m in run.meters if m.get("cpu")), "")
    gpu_models = sorted({str(m.get("model")) for m in run.meters if m.get("kind") == "gpu" and m.get("model")})
    co2_kg = run.co2e_g / 1000
    cloud = loc.get("cloud_provider")
    return {
        "timestamp": run.ended_at or run.started_at,
        "project_name": run.project,
        "run_id": run.run_id,
        "experiment_id": run.metadata.get("experiment_id", ""),
        "duration": dur,
        "emissions": co2_kg,
        "emissions_rate": co2_kg / dur if dur > 0 else 0.0,
        "cpu_power": p_w("cpu"),
        "gpu_power": p_w("gpu"),
        "ram_power": p_w("ram"),
        "cpu_energy": e_kwh("cpu"),
        "gpu_energy": e_kwh("gpu"),
        "ram_energy": e_kwh("ram"),
        "energy_consumed": run.energy_j / J_PER_KWH,
        "water_consumed": 0.0,
        "country_name": loc.get("name", ""),
        "country_iso_code": code if len(code) == 3 and code.isalpha() else "",
        "region": "" if cloud or (len(code) == 3 and code.isalpha()) else code,
        "cloud_provider": cloud or "",
        "cloud_region": code.split(":", 1)[1] if cloud and ":" in code else "",
        "os": platform.platform(),
        "python_version": platform.python_version(),
        "codecarbon_version": "",
        "cpu_count": os.cpu_count() or 0,
        "cpu_model": cpu_model,
        "gpu_count": len(by_kind["gpu"]),
        "gpu_model": ", ".join(gpu_models),
        "longitude": "",
        "latitude": "",
        "ram_total_size": "",
        "tracking_mode": "process" if any(c.scope == "process" for c in run.components) else "machine",
        "cpu_utilization_percent": "",
        "gpu_utilization_percent": "",
        "ram_utilization_percent": "",
        "ram_used_gb": "",
        "on_cloud": "Y" if cloud else "N",
        "pue": run.pue,
        "wue": 0,
        "greenlm_status": run.status,
        "greenlm_provenance": run.provenance,
        "greenlm_cpu_provenance": prov("cpu"),
        "greenlm_gpu_provenance": prov("gpu"),
        "greenlm_ram_provenance": prov("ram"),
        "greenlm_energy_low_kwh": run.energy_low_j / J_PER_KWH,
        "greenlm_energy_high_kwh": run.energy_high_j / J_PER_KWH,
        "greenlm_facility_energy_kwh": run.facility_energy_j / J_PER_KWH,
        "greenlm_co2e_g": run.co2e_g,
        "greenlm_intensity_g_per_kwh": loc.get("intensity_g_per_kwh"),
        "greenlm_intensity_source": loc.get("source", ""),
        "greenlm_intensity_year": loc.get("year", ""),
        "greenlm_location_defaulted": loc.get("defaulted", ""),
        "greenlm_cost": run.cost,
        "greenlm_currency": run.currency,
        "greenlm_steps": run.steps,
        "greenlm_warnings": " | ".join(run.warnings),
    }


def damaged_row(run: StoredRun) -> dict[str, Any]:
    """The row of a run whose record cannot be read: its identity, blank figures, the reason.

    Figures are left empty rather than written as 0 (a spreadsheet would add a zero);
    ``greenlm_status`` is ``damaged`` and ``greenlm_warnings`` says why.
    """
    out = dict.fromkeys(COLUMNS, "")
    out.update(
        timestamp=run.started_at,
        project_name=run.project,
        run_id=run.run_id,
        greenlm_status="damaged",
        greenlm_warnings=f"damaged record: {run.damaged}",
    )
    return out


def to_csv(results: Iterable[RunResult | StoredRun | Mapping[str, Any]]) -> str:
    """CSV text (header + one row per run); a damaged stored run gets a :func:`damaged_row`."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in results:
        if isinstance(r, StoredRun):
            w.writerow(row(r.result) if r.result is not None else damaged_row(r))
        else:
            w.writerow(row(r if isinstance(r, RunResult) else RunResult.from_dict(dict(r))))
    return buf.getvalue()


def append_csv(path: str | os.PathLike[str], results: Iterable[RunResult | Mapping[str, Any]]) -> None:
    """Append rows to ``path`` like CodeCarbon does, safely when several runs append at once.

    The file is opened for appending and locked (``flock``) while its header is checked and
    the rows are written, so concurrent appenders each add their rows, none is lost, and the
    header is written once. A symbolic link is written through and the file keeps its
    permissions. An existing file with another header is not touched: ConfigError.
    """
    import fcntl

    p = Path(path).expanduser()
    new = to_csv(results)
    header_line, _, rows = new.partition("\n")
    try:
        fd = os.open(p, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as e:
        raise ConfigError(f"cannot write {p}: {e.strerror or e}") from None
    with os.fdopen(fd, "r+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            f.seek(0)
            first = f.readline().decode("utf-8", errors="replace").rstrip("\r\n")
            if first and first.split(",") != list(COLUMNS):
                raise ConfigError(
                    f"{p} exists with a different header (not a greenlm/CodeCarbon emissions file); "
                    "choose another --output path."
                )
            end = f.seek(0, os.SEEK_END)
            out = b""
            if not first:
                out += (header_line + "\n").encode("utf-8")
            elif end > 0:
                f.seek(end - 1)
                if f.read(1) != b"\n":
                    out += b"\n"
            out += rows.encode("utf-8")
            f.write(out)  # O_APPEND: at the end, whatever the position
            f.flush()
            os.fsync(f.fileno())
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
