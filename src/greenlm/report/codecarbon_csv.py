"""CSV in CodeCarbon's ``emissions.csv`` column layout, plus greenlm's provenance columns.

The first columns are exactly CodeCarbon's (``EmissionsData``, v3), in its units and with
the values CodeCarbon writes, so tools that read CodeCarbon output (its carbonboard
dashboard, a test loads greenlm's file with it) read this file:

* ``timestamp``: the run's end in local time, ``2025-01-31T14:05:09`` (CodeCarbon's format);
* ``duration`` s, ``emissions`` kg CO2e (facility energy x intensity), ``emissions_rate``
  kg/s, ``*_power`` W (mean over the run), ``*_energy`` and ``energy_consumed`` kWh of IT
  energy (cpu + gpu + ram, before PUE; ``pue`` is its own column);
* where: ``country_iso_code`` ISO 3166 alpha-3 and ``country_name`` for every location
  greenlm knows, ``region`` the lower-case name of a sub-national region (``california``,
  ``quebec``, ``wecc california`` for eGRID CAMX: CodeCarbon has no eGRID subregions) or,
  on a cloud, the region's state or city (``Virginia`` for aws:us-east-1), with
  ``on_cloud``, ``cloud_provider`` and ``cloud_region`` (``aws`` / ``us-east-1``);
* the machine, from the run's metadata: ``cpu_count``, ``cpu_model``, ``gpu_count``,
  ``gpu_model``, ``ram_total_size`` (GB), ``cpu_utilization_percent`` (the machine's mean
  over the run), ``ram_utilization_percent`` and ``ram_used_gb`` (at the run's end);
  ``codecarbon_version`` stays empty (greenlm is not CodeCarbon): ``greenlm_version`` says
  which greenlm wrote the row. What greenlm does not know (GPU utilisation, coordinates,
  water) is left empty, never invented.

greenlm's columns follow, prefixed ``greenlm_``.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import os
import platform
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from greenlm.data import read_csv
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
    "greenlm_version",
)
COLUMNS = CODECARBON_COLUMNS + GREENLM_COLUMNS
#: CodeCarbon's ``timestamp`` format (local time, no zone).
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S"
J_PER_KWH = 3.6e6


@functools.cache
def _places() -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]], dict[str, dict[str, str]]]:
    """Countries (alpha-2/alpha-3 -> alpha-3, name), sub-national regions (code -> alpha-3,
    name) and cloud regions (``provider:region`` -> row), from the shipped tables.
    """
    countries: dict[str, tuple[str, str]] = {}
    for r in read_csv("grid_intensity_country.csv") + read_csv("grid_intensity_country_odbl.csv", optional=True):
        if r.get("iso3"):
            entry = (r["iso3"], r.get("country_name") or r["iso3"])
            countries.setdefault(r["iso3"].upper(), entry)
            if r.get("iso2"):
                countries.setdefault(r["iso2"].upper(), entry)
    regions: dict[str, tuple[str, str]] = {}
    sub = read_csv("grid_intensity_subnational.csv") + read_csv("grid_intensity_subnational_odbl.csv", optional=True)
    for r in sorted(sub, key=lambda r: r.get("is_preferred") != "1"):  # the preferred row's name first
        if r.get("region_code"):
            regions.setdefault(r["region_code"].upper(), (r.get("country_iso3") or "", r.get("region_name") or ""))
    clouds: dict[str, dict[str, str]] = {}
    for r in read_csv("cloud_regions.csv") + read_csv("cloud_regions_odbl.csv", optional=True):
        clouds.setdefault(f"{r.get('provider')}:{r.get('region_id')}".lower(), r)
    return countries, regions, clouds


def _plain(name: str) -> str:
    """A region name as CodeCarbon writes it: lower case, no accents (``Québec`` -> ``quebec``)."""
    base = name.split(" (")[0]
    return "".join(c for c in unicodedata.normalize("NFKD", base) if not unicodedata.combining(c)).lower().strip()


def geography(location: Mapping[str, Any]) -> dict[str, str]:
    """CodeCarbon's location columns for a run's ``location`` (``code``, ``cloud_provider``).

    ``country_iso_code`` (alpha-3), ``country_name``, ``region``, ``on_cloud``,
    ``cloud_provider`` and ``cloud_region``; empty strings where greenlm does not know.
    """
    countries, regions, clouds = _places()
    code = str(location.get("code") or "")
    out = {"country_iso_code": "", "country_name": "", "region": "", "on_cloud": "N"}
    out.update(cloud_provider="", cloud_region="")

    def country(iso: str) -> None:
        hit = countries.get(iso.upper())
        if hit:
            out["country_iso_code"], out["country_name"] = hit

    provider = location.get("cloud_provider")
    if provider and ":" in code:
        region_id = code.split(":", 1)[1]
        out.update(on_cloud="Y", cloud_provider=str(provider), cloud_region=region_id)
        row = clouds.get(code.lower())
        if row is not None:
            country(row.get("country_iso3") or row.get("country_iso2") or "")
            sub = regions.get((row.get("subdivision_iso3166_2") or "").upper())
            city = (row.get("location") or "").split(",")[0].split(" (")[0].strip()
            out["region"] = sub[1] if sub and sub[1] else city
        return out
    if code.upper() in countries:
        country(code)
        return out
    hit = regions.get(code.upper())
    if hit is not None:
        country(hit[0])
        out["region"] = _plain(hit[1] or str(location.get("name") or code))
    elif location.get("name") and not location.get("defaulted"):
        out["region"] = _plain(str(location["name"]))
    return out


def _timestamp(iso: str | None) -> str:
    """An ISO time (UTC, with zone) as CodeCarbon writes it: local time, seconds, no zone."""
    if not iso:
        return ""
    try:
        t = dt.datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if t.tzinfo is not None:
        t = t.astimezone()
    return t.strftime(TIMESTAMP_FORMAT)


def _hardware(run: RunResult) -> Mapping[str, Any]:
    hw = run.metadata.get("hardware")
    return hw if isinstance(hw, Mapping) else {}


def _utilization(run: RunResult) -> Mapping[str, Any]:
    u = run.metadata.get("utilization")
    return u if isinstance(u, Mapping) else {}


@functools.cache
def _version() -> str:
    try:
        from importlib.metadata import version

        return version("greenlm")
    except Exception:
        return ""


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
    hw, util = _hardware(run), _utilization(run)
    cpu_model = next((str(m.get("cpu")) for m in run.meters if m.get("cpu")), "") or str(hw.get("cpu") or "")
    gpu_models = sorted({str(m.get("model")) for m in run.meters if m.get("kind") == "gpu" and m.get("model")})
    co2_kg = run.co2e_g / 1000
    return {
        "timestamp": _timestamp(run.ended_at or run.started_at),
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
        **geography(loc),
        "os": platform.platform(),
        "python_version": platform.python_version(),
        "codecarbon_version": "",
        "cpu_count": hw.get("cpu_threads") or os.cpu_count() or 0,
        "cpu_model": cpu_model,
        "gpu_count": len(by_kind["gpu"]),
        "gpu_model": ", ".join(gpu_models),
        "longitude": "",
        "latitude": "",
        "ram_total_size": _num(hw.get("ram_total_gb")),
        "tracking_mode": "process" if any(c.scope == "process" for c in run.components) else "machine",
        "cpu_utilization_percent": _num(util.get("cpu_percent")),
        "gpu_utilization_percent": "",
        "ram_utilization_percent": _num(util.get("ram_percent")),
        "ram_used_gb": _num(util.get("ram_used_gb")),
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
        "greenlm_version": _version(),
    }


def _num(x: Any) -> Any:
    """A number as is, or '' when missing (a spreadsheet would add a 0)."""
    return x if isinstance(x, (int, float)) and not isinstance(x, bool) else ""


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


def to_csv(results: Iterable[RunResult | StoredRun | Mapping[str, Any]], columns: Sequence[str] = COLUMNS) -> str:
    """CSV text (header + one row per run); a damaged stored run gets a :func:`damaged_row`.

    ``columns``: a leading part of :data:`COLUMNS` (the layout of a file an older greenlm
    wrote, which :func:`append_csv` keeps).
    """
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
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
    permissions. A file an older greenlm wrote (its header a leading part of today's, with
    all of CodeCarbon's columns) gets rows in its own layout. An existing file with another
    header is not touched: ConfigError.
    """
    import fcntl

    p = Path(path).expanduser()
    results = list(results)
    try:
        fd = os.open(p, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as e:
        raise ConfigError(f"cannot write {p}: {e.strerror or e}") from None
    with os.fdopen(fd, "r+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            f.seek(0)
            first = f.readline().decode("utf-8", errors="replace").rstrip("\r\n")
            have = first.split(",") if first else list(COLUMNS)
            older = len(CODECARBON_COLUMNS) <= len(have) <= len(COLUMNS) and have == list(COLUMNS[: len(have)])
            if not older:
                raise ConfigError(
                    f"{p} exists with a different header (not a greenlm/CodeCarbon emissions file); "
                    "choose another --output path."
                )
            header_line, _, rows = to_csv(results, have).partition("\n")
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
