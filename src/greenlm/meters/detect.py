"""Pick meters in order of trust and say why the others were not used.

GPU: NVML energy counter > NVML power sampling > none. CPU: RAPL package counters > CPU
power model. RAM: RAPL dram counters > RAM power model. Each fallback becomes one warning in
the result; ``greenlm detect`` prints the whole report.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from greenlm.errors import MeterUnavailableError
from greenlm.meters.base import Meter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MeterStatus:
    """One backend's verdict on this machine."""

    backend: str
    available: bool
    used: bool
    detail: str


@dataclass
class Detection:
    """Meters chosen, what each backend said, and the fallbacks to record."""

    meters: list[Meter] = field(default_factory=list)
    report: list[MeterStatus] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def detect(
    *,
    pid: int | None = None,
    rapl_root: str = "/sys/class/powercap",
    cpu_tdp_w: float | None = None,
    attribution: str = "process",
    gpus: bool = True,
) -> Detection:
    """Build the meters for this machine."""
    from greenlm.meters import cpu_model, nvml, ram_model, rapl
    from greenlm.meters._proctree import ProcessTree

    det = Detection()
    # GPUs
    if gpus:
        try:
            gm = nvml.nvml_meters()
            kinds = sorted({m.provenance for m in gm})
            det.meters += gm
            det.report.append(MeterStatus("NVML", True, True, f"{len(gm)} GPU(s), {'/'.join(kinds)}"))
            for m in gm:
                if m.provenance == "sampled":
                    det.warnings.append(
                        f"{m.name}: no NVML energy counter (pre-Volta GPU); power is sampled and integrated"
                    )
        except MeterUnavailableError as e:
            det.report.append(MeterStatus("NVML", False, False, e.reason))
    # CPU and RAM
    rapl_ok: list[Meter] = []
    try:
        rapl_ok = rapl.rapl_meters(rapl_root)
        det.report.append(MeterStatus("RAPL", True, True, ", ".join(m.name for m in rapl_ok)))
    except MeterUnavailableError as e:
        det.report.append(MeterStatus("RAPL", False, False, e.reason))
        if "permission" in e.reason:
            det.warnings.append(f"RAPL: {e.reason}; fell back to the CPU power model")
    tree = ProcessTree(pid if pid is not None else os.getpid())
    if any(m.kind == "cpu" for m in rapl_ok):
        det.meters += [m for m in rapl_ok if m.kind == "cpu"]
        det.report.append(MeterStatus("CPU model", True, False, "not needed: RAPL package counters"))
    else:
        spec = cpu_model.cpu_spec(tdp_w=cpu_tdp_w)
        det.meters.append(cpu_model.CpuModelMeter(spec, attribution=attribution, tree=tree))
        det.report.append(MeterStatus("CPU model", True, True, spec.source))
        det.warnings.append("CPU energy is modeled (utilisation x TDP; no RAPL counter): see the band")
        if spec.defaulted:
            det.warnings.append(f"CPU TDP {spec.source}")
    if any(m.kind == "ram" for m in rapl_ok):
        det.meters += [m for m in rapl_ok if m.kind == "ram"]
        det.report.append(MeterStatus("RAM model", True, False, "not needed: RAPL dram counters"))
    else:
        det.meters.append(ram_model.RamModelMeter(attribution=attribution, tree=tree))
        det.report.append(MeterStatus("RAM model", True, True, f"{ram_model.W_PER_GB[1]} W/GB of memory in use"))
    return det
