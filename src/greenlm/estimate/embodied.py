"""Embodied carbon: manufacturing emissions of accelerators and their servers, amortized.

``embodied = per-chip embodied x chip-hours / (lifetime hours x utilisation)``: a job is
charged the share of the hardware's useful life it occupies (the method of Luccioni et al.
2023 for BLOOM). Per chip: the accelerator's whole-device figure from the table when there is
one, else the A100 figure used for BLOOM; plus the server's share per accelerator. Die-only
figures in the table (LLMCarbon) exclude memory, package and board, so they are shown, not
used. Always reported apart from operational emissions.
"""

from __future__ import annotations

from dataclasses import dataclass

from greenlm.estimate import defaults
from greenlm.estimate.hardware import Hardware
from greenlm.estimate.uncertainty import Range, combine

HOURS_PER_YEAR = 8760.0


@dataclass(frozen=True)
class EmbodiedPerChip:
    """Embodied kgCO2e attributed to one accelerator (device + server share)."""

    kg: Range
    source: str


def per_chip(hw: Hardware) -> EmbodiedPerChip:
    """Embodied carbon of one accelerator and its share of the server, with a range."""
    whole_device = hw.embodied_kgco2e is not None and "die only" not in hw.embodied_scope.lower()
    if whole_device:
        assert hw.embodied_kgco2e is not None
        device = hw.embodied_kgco2e
        dev_src = f"{hw.name}: {device:g} kgCO2e ({hw.embodied_source})"
    else:
        device = defaults.EMBODIED_DEVICE_KG.value
        dev_src = defaults.EMBODIED_DEVICE_KG.source
        if hw.embodied_kgco2e is not None:
            dev_src += (
                f" (the table's {hw.embodied_kgco2e:g} kg for {hw.name} is die-only and "
                "excludes memory, package and board)"
            )
    server = defaults.EMBODIED_SERVER_KG_PER_CHIP.value
    total = device + server
    low = min(total, defaults.EMBODIED_TOTAL_LOW_KG_PER_CHIP)
    src = "; ".join([dev_src, defaults.EMBODIED_SERVER_KG_PER_CHIP.source, defaults.EMBODIED_TOTAL_LOW_SOURCE])
    return EmbodiedPerChip(Range(total, low, total), src)


def amortized_kg(hw: Hardware, chip_hours: Range) -> tuple[Range, str]:
    """Embodied kgCO2e charged to ``chip_hours`` of ``hw``, and the sources used."""
    pc = per_chip(hw)
    life_h = defaults.LIFETIME_YEARS.range.scaled(HOURS_PER_YEAR)
    kg = combine([(pc.kg, 1), (chip_hours, 1), (life_h, -1), (defaults.LIFETIME_UTILIZATION.range, -1)])
    src = f"{pc.source}; {defaults.LIFETIME_YEARS.source}; {defaults.LIFETIME_UTILIZATION.source}"
    return kg, src
