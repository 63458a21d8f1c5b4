"""Power usage effectiveness (PUE): facility energy = IT energy x PUE.

Defaults by *setting* (each from ``data/pue.csv``, newest row of the named entity):

* ``local`` (laptop, workstation, a machine in an office): 1.0, no facility overhead;
* ``on-premise`` (an enterprise data centre): the Uptime Institute industry average;
* ``aws`` / ``gcp`` / ``azure``: the provider's published fleet PUE.

``auto`` (the default) takes the provider of a cloud-region location, else ``local``.
"""

from __future__ import annotations

from dataclasses import dataclass

from greenlm._validate import finite
from greenlm.data import read_csv
from greenlm.errors import ConfigError

SETTINGS = ("auto", "local", "on-premise", "aws", "gcp", "azure")

_ENTITY = {
    "on-premise": "Industry average (Uptime Institute survey)",
    "aws": "Amazon Web Services (fleet)",
    "gcp": "Google (fleet)",
    "azure": "Microsoft (fleet)",
}


@dataclass(frozen=True)
class Pue:
    """The PUE used and where it comes from."""

    value: float
    source: str
    defaulted: bool


def _newest(entity: str) -> tuple[float, str]:
    rows = [r for r in read_csv("pue.csv") if r["entity"] == entity and r["entity_type"] != "tool_default"]
    best = max(rows, key=lambda r: (int(r["year"]), -float(r["pue"])))
    return float(best["pue"]), f"{entity}, {best['year']}: {best['source']}"


def resolve_pue(value: float | None, setting: str = "auto", cloud_provider: str | None = None) -> Pue:
    """The PUE to use: ``value`` if given (validated), else the default for ``setting``."""
    if value is not None:
        v = finite("PUE", value, minimum=1.0, hint=" PUE is facility energy / IT energy, e.g. 1.1-1.6.")
        return Pue(v, "user value", defaulted=False)
    s = setting.lower().replace("_", "-")
    if s not in SETTINGS:
        raise ConfigError(f"Unknown PUE setting {setting!r}; use one of {', '.join(SETTINGS)}.")
    if s == "auto":
        s = cloud_provider.lower() if cloud_provider else "local"
    if s == "local":
        return Pue(1.0, "default for setting 'local' (no facility overhead assumed)", defaulted=True)
    v, src = _newest(_ENTITY[s])
    return Pue(v, f"default for setting {s!r}: {src}", defaulted=True)
