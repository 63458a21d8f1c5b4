"""Intel / AMD RAPL energy counters through the Linux powercap sysfs tree.

Reads ``<root>/intel-rapl:N/energy_uj`` (package domains) and their ``dram`` sub-domains.
The reader takes an injectable ``root`` so tests point it at fixture trees.

* Wraparound: a counter that goes down wrapped at ``max_energy_range_uj``; the delta is
  ``now + max_range - before``. The sampling thread reads far more often than the shortest
  wrap period (minutes), so at most one wrap happens between reads.
* Duplicates: ``intel-rapl-mmio:N`` repeats ``package-N`` through MMIO; the first domain with
  a given name wins (the MSR one). ``psys`` (whole platform) overlaps the packages and is
  skipped.
* Permissions: since CVE-2020-8694 (Platypus) ``energy_uj`` is readable by root only. The
  error says how to grant read access; the factory then falls back to the CPU model.

RAPL counts the whole package, every process on it: components carry ``scope="device"``.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from greenlm.config import DEFAULT_RAPL_ROOT
from greenlm.errors import MeterUnavailableError
from greenlm.meters.base import Band, Meter

log = logging.getLogger(__name__)

DEFAULT_ROOT = DEFAULT_RAPL_ROOT
_DOMAIN_DIR = re.compile(r"^(intel-rapl|intel-rapl-mmio|amd-rapl)(:\d+)+$")

PERMISSION_HINT = (
    "energy_uj is readable by root only since CVE-2020-8694. To let greenlm read it: "
    "`sudo chmod -R a+r /sys/class/powercap/intel-rapl*` (until reboot), or a udev rule "
    '`SUBSYSTEM=="powercap", ACTION=="add", RUN+="/bin/chmod a+r %S%p/energy_uj"`; '
    "or run as root"
)


@dataclass(frozen=True)
class RaplDomain:
    """One readable RAPL domain."""

    name: str  # e.g. "package-0", "dram-0"
    path: Path
    max_range_uj: int
    kind: str  # "cpu" or "ram"


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


def discover(root: str | os.PathLike[str] = DEFAULT_ROOT) -> list[RaplDomain]:
    """Readable package and DRAM domains under ``root``, de-duplicated.

    Raises :class:`MeterUnavailableError` when none can be used, saying why.
    """
    base = Path(root)
    if not base.is_dir():
        raise MeterUnavailableError("RAPL", f"{base} missing (no powercap driver, or not Linux)")
    dirs = sorted(
        (d for d in base.iterdir() if _DOMAIN_DIR.match(d.name)),
        key=lambda d: (d.name.startswith("intel-rapl-mmio"), d.name.count(":"), d.name),
    )
    if not dirs:
        raise MeterUnavailableError("RAPL", f"no intel-rapl domains under {base}")
    found: dict[str, RaplDomain] = {}
    denied: list[str] = []
    for d in dirs:
        try:
            raw = (d / "name").read_text().strip()
        except OSError:
            continue
        if raw.startswith("package-"):
            name, kind = raw, "cpu"
        elif raw == "dram":
            pkg = d.name.split(":")[1] if d.name.count(":") >= 2 else "0"
            name, kind = f"dram-{pkg}", "ram"
        else:  # core, uncore (inside package), psys (overlaps packages)
            continue
        if name in found:
            continue
        try:
            _read_int(d / "energy_uj")
            max_range = _read_int(d / "max_energy_range_uj")
        except PermissionError:
            denied.append(str(d / "energy_uj"))
            continue
        except (OSError, ValueError) as e:
            log.debug("RAPL domain %s unreadable: %s", d, e)
            continue
        found[name] = RaplDomain(name, d, max_range, kind)
    if not found:
        if denied:
            raise MeterUnavailableError("RAPL", f"permission denied on {denied[0]}: {PERMISSION_HINT}")
        raise MeterUnavailableError("RAPL", f"no readable package or dram domain under {base}")
    return list(found.values())


class RaplMeter(Meter):
    """Cumulative energy of one RAPL domain, with wraparound handling."""

    provenance = "counter"
    band = Band(1.0, 1.0, "RAPL counter (whole package; RAPL is a model-calibrated counter on older Intel parts)")
    node_level = True

    def __init__(self, domain: RaplDomain) -> None:
        super().__init__()
        self.domain = domain
        self.name = f"cpu:{domain.name}" if domain.kind == "cpu" else f"ram:{domain.name}"
        self.kind = "cpu" if domain.kind == "cpu" else "ram"
        self._file = domain.path / "energy_uj"
        self._last_uj = 0
        self._total_uj = 0
        self._t_last: float | None = None

    def _read_uj(self) -> int:
        return _read_int(self._file)

    def start(self) -> None:
        self._last_uj = self._read_uj()
        self._total_uj = 0

    def energy_j(self) -> float:
        import time

        now_uj = self._read_uj()
        delta = now_uj - self._last_uj
        if delta < 0:  # wrapped around max_energy_range_uj
            delta += self.domain.max_range_uj
        self._last_uj = now_uj
        self._total_uj += delta
        t = time.monotonic()
        if self._t_last is not None and t > self._t_last:
            self.last_power_w = delta / 1e6 / (t - self._t_last)
        self._t_last = t
        return self._total_uj / 1e6

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "path": str(self.domain.path), "scope": "device"}

    def fallback(self) -> Meter:
        """If the counter becomes unreadable: the CPU or RAM model for the machine."""
        if self.kind == "cpu":
            from greenlm.meters.cpu_model import CpuModelMeter, cpu_spec

            m: Meter = CpuModelMeter(cpu_spec(), attribution="machine")
        else:
            from greenlm.meters.ram_model import RamModelMeter

            m = RamModelMeter(attribution="machine")
        m.name = self.name
        return m


def rapl_meters(root: str | os.PathLike[str] = DEFAULT_ROOT) -> list[Meter]:
    """One meter per usable domain; raises MeterUnavailableError when there is none."""
    return [RaplMeter(d) for d in discover(root)]
