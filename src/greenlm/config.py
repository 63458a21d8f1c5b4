"""Typed, validated configuration shared by the Python API, the CLI and the integrations.

Precedence, highest first: explicit arguments > ``GREENLM_*`` environment variables > the
config file (``$GREENLM_CONFIG``, else ``$GREENLM_HOME/config.yaml``) > defaults.

Environment variables: ``GREENLM_PROJECT``, ``GREENLM_LOCATION``, ``GREENLM_PUE``,
``GREENLM_PUE_SETTING``, ``GREENLM_PRICE_PER_KWH``, ``GREENLM_CURRENCY``,
``GREENLM_INTERVAL_S``, ``GREENLM_FLUSH_INTERVAL_S``, ``GREENLM_STORE``,
``GREENLM_CPU_TDP_W``, ``GREENLM_ATTRIBUTION``, ``GREENLM_HOME``, ``GREENLM_CONFIG``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greenlm._validate import finite
from greenlm.errors import ConfigError

ATTRIBUTIONS = ("process", "machine")


def greenlm_home() -> Path:
    """``$GREENLM_HOME`` or ``~/.greenlm``: the run store, caches and calibration live here."""
    return Path(os.environ.get("GREENLM_HOME") or Path.home() / ".greenlm")


def default_store_url() -> str:
    """``$GREENLM_STORE`` or SQLite at ``$GREENLM_HOME/runs.db``."""
    return os.environ.get("GREENLM_STORE") or f"sqlite:///{greenlm_home() / 'runs.db'}"


@dataclass(frozen=True)
class TrackerConfig:
    """Everything a tracker needs; build with :meth:`resolve` to apply env and config file."""

    project: str = "default"
    location: str | None = None
    pue: float | None = None
    pue_setting: str = "auto"
    price_per_kwh: float | None = None
    currency: str | None = None
    interval_s: float = 1.0
    flush_interval_s: float = 5.0
    store: str | None = None
    cpu_tdp_w: float | None = None
    attribution: str = "process"
    rapl_root: str = "/sys/class/powercap"
    gpus: bool = True
    tensorboard_dir: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        finite(
            "interval_s",
            self.interval_s,
            minimum=0.0,
            strict=True,
            hint=" The sampling interval is in seconds, e.g. 1.0 or 0.1 for 10 Hz.",
        )
        finite("flush_interval_s", self.flush_interval_s, minimum=0.0, strict=True)
        if self.pue is not None:
            finite("PUE", self.pue, minimum=1.0, hint=" PUE is facility / IT energy, >= 1 (e.g. 1.1).")
        if self.price_per_kwh is not None:
            finite("price_per_kwh", self.price_per_kwh, minimum=0.0)
        if self.cpu_tdp_w is not None:
            finite("cpu_tdp_w", self.cpu_tdp_w, minimum=0.0, strict=True)
        if self.attribution not in ATTRIBUTIONS:
            raise ConfigError(f"attribution must be one of {ATTRIBUTIONS}, got {self.attribution!r}.")
        if not str(self.project).strip():
            raise ConfigError("project must be a non-empty name.")

    @classmethod
    def resolve(cls, **kwargs: Any) -> TrackerConfig:
        """Merge arguments (None = not given) over environment over config file."""
        merged: dict[str, Any] = {}
        merged.update(_from_file())
        merged.update(_from_env())
        merged.update({k: v for k, v in kwargs.items() if v is not None})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(merged) - names)
        if unknown:
            raise ConfigError(f"Unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}.")
        return cls(**merged)


_ENV: dict[str, tuple[str, type]] = {
    "GREENLM_PROJECT": ("project", str),
    "GREENLM_LOCATION": ("location", str),
    "GREENLM_PUE": ("pue", float),
    "GREENLM_PUE_SETTING": ("pue_setting", str),
    "GREENLM_PRICE_PER_KWH": ("price_per_kwh", float),
    "GREENLM_CURRENCY": ("currency", str),
    "GREENLM_INTERVAL_S": ("interval_s", float),
    "GREENLM_FLUSH_INTERVAL_S": ("flush_interval_s", float),
    "GREENLM_STORE": ("store", str),
    "GREENLM_CPU_TDP_W": ("cpu_tdp_w", float),
    "GREENLM_ATTRIBUTION": ("attribution", str),
}


def _from_env() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for var, (key, typ) in _ENV.items():
        raw = os.environ.get(var)
        if raw is None or raw == "":
            continue
        try:
            out[key] = typ(raw)
        except ValueError:
            raise ConfigError(f"{var}={raw!r} is not a valid {typ.__name__}.") from None
    return out


def config_file_path() -> Path:
    """``$GREENLM_CONFIG`` or ``$GREENLM_HOME/config.yaml``."""
    return Path(os.environ.get("GREENLM_CONFIG") or greenlm_home() / "config.yaml")


def _from_file() -> dict[str, Any]:
    path = config_file_path()
    explicit = "GREENLM_CONFIG" in os.environ
    if not path.exists():
        if explicit:
            raise ConfigError(f"GREENLM_CONFIG points to {path}, which does not exist.")
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(
            f"Cannot read config file {path}: {e}. It must be a YAML mapping, e.g. 'location: DEU'."
        ) from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must be a YAML mapping (key: value), got {type(data).__name__}.")
    return data
