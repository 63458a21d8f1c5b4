"""Typed, validated configuration shared by the Python API, the CLI and the integrations.

One resolved, frozen :class:`TrackerConfig` is built in one place, :meth:`TrackerConfig.resolve`,
from three sources, highest first:

1. explicit arguments (``EnergyTracker(interval_s=0.5)``, ``--interval 0.5``);
2. ``GREENLM_*`` environment variables (:data:`ENV_VARS`);
3. the config file (``$GREENLM_CONFIG``, else ``$GREENLM_HOME/config.yaml``);

then defaults. Values are coerced to each setting's type and validated there, whatever their
source: a YAML ``interval_s: 5e-1`` (which YAML reads as a string) is the float 0.5, an
environment variable ``GREENLM_GPUS=false`` is ``False``, and a value that cannot be one
(``interval_s: fast``, ``pue: 7``) is a :class:`~greenlm.errors.ConfigError` naming the
setting, where it came from, and what would be right. Ranges come from
:mod:`greenlm.limits`. ``EnergyTracker(config=cfg, interval_s=0.5)`` merges the override
into ``cfg`` (:meth:`TrackerConfig.merged`); it never drops it.

The team server's URL and token resolve here too (``server`` / ``token``:
``GREENLM_SERVER`` / ``GREENLM_TOKEN``, or the config file), for the tracker and for
``greenlm server push`` alike.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greenlm import limits
from greenlm.errors import ConfigError

ATTRIBUTIONS = ("process", "machine")
PUE_SETTINGS = ("auto", "local", "on-premise", "aws", "gcp", "azure")
#: Where Linux exposes RAPL energy counters (the powercap sysfs tree).
DEFAULT_RAPL_ROOT = "/sys/class/powercap"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def greenlm_home() -> Path:
    """``$GREENLM_HOME`` or ``~/.greenlm``: the run store, caches and calibration live here."""
    return Path(os.environ.get("GREENLM_HOME") or Path.home() / ".greenlm").expanduser()


def default_store_url() -> str:
    """``$GREENLM_STORE`` or SQLite at ``$GREENLM_HOME/runs.db``."""
    return os.environ.get("GREENLM_STORE") or f"sqlite:///{greenlm_home() / 'runs.db'}"


@dataclass(frozen=True)
class TrackerConfig:
    """Everything a tracker needs, validated; build it with :meth:`resolve`."""

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
    rapl_root: str = DEFAULT_RAPL_ROOT
    gpus: bool = True
    server: str | None = None
    token: str | None = field(default=None, repr=False)
    #: One run for all ranks of a job: ``None`` = when a launcher says this is one rank of
    #: several (torchrun, Slurm, MPI, ...), ``False`` = one run per process, ``True`` = always.
    distributed: bool | None = None
    #: Where the ranks of one node meet (lock and report files); default: see
    #: :func:`greenlm.tracking.group.runtime_root`.
    runtime_dir: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _coerce(f.name, getattr(self, f.name)))
        _check(self)

    @classmethod
    def resolve(cls, **arguments: Any) -> TrackerConfig:
        """Arguments (``None`` = not given) over environment over config file over defaults."""
        values: dict[str, Any] = {}
        origin: dict[str, str] = {}
        for source, items in (
            (f"config file {config_file_path()}", _from_file()),
            ("environment", _from_env()),
            ("argument", {k: v for k, v in arguments.items() if v is not None}),
        ):
            for k, v in items.items():
                values[k] = v
                origin[k] = source if source != "environment" else _ENV_OF.get(k, "environment")
        _no_unknown(values, origin)
        return _build(cls, values, origin)

    def merged(self, **overrides: Any) -> TrackerConfig:
        """Return this config with ``overrides`` applied (``None`` = keep), validated like :meth:`resolve`."""
        given = {k: v for k, v in overrides.items() if v is not None}
        _no_unknown(given, dict.fromkeys(given, "argument"))
        if "metadata" in given:
            given["metadata"] = {**self.metadata, **dict(given["metadata"])}
        values = {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, **given}
        return _build(type(self), values, dict.fromkeys(given, "argument"))

    def to_dict(self) -> dict[str, Any]:
        """The settings, with the token hidden."""
        d = dataclasses.asdict(self)
        if d.get("token"):
            d["token"] = "***"
        return d


class TrackerSettings(typing.TypedDict, total=False):
    """The keyword form of :class:`TrackerConfig` (what ``EnergyTracker(**settings)`` takes).

    ``project``, ``store`` and ``metadata`` are explicit parameters of the tracker; a test
    checks that this lists exactly the config's other fields.
    """

    location: str | None
    pue: float | None
    pue_setting: str
    price_per_kwh: float | None
    currency: str | None
    interval_s: float
    flush_interval_s: float
    cpu_tdp_w: float | None
    attribution: str
    rapl_root: str
    gpus: bool
    server: str | None
    token: str | None
    distributed: bool | None
    runtime_dir: str | None


def setting_names() -> tuple[str, ...]:
    """Every setting :class:`TrackerConfig` takes."""
    return tuple(f.name for f in dataclasses.fields(TrackerConfig))


def _build(cls: type[TrackerConfig], values: dict[str, Any], origin: dict[str, str]) -> TrackerConfig:
    try:
        return cls(**values)
    except ConfigError as e:
        name = getattr(e, "setting", None)
        where = origin.get(name or "", "")
        if where and where != "argument":
            raise ConfigError(f"{e} (from {where})") from None
        raise


def _no_unknown(values: dict[str, Any], origin: dict[str, str]) -> None:
    names = set(setting_names())
    unknown = sorted(set(values) - names)
    if unknown:
        import difflib

        parts = []
        for k in unknown:
            close = difflib.get_close_matches(k, names, n=1)
            parts.append(f"{k!r} ({origin.get(k, 'argument')})" + (f": did you mean {close[0]!r}?" if close else ""))
        raise ConfigError(f"Unknown setting {'; '.join(parts)}. Valid settings: {', '.join(sorted(names))}.")


# ----------------------------------------------------------------- coercion and checks
def _hints() -> dict[str, Any]:
    global _HINTS
    if _HINTS is None:
        _HINTS = typing.get_type_hints(TrackerConfig)
    return _HINTS


_HINTS: dict[str, Any] | None = None


def _base_type(tp: Any) -> tuple[type, bool]:
    """(the concrete type, whether None is allowed) of an annotation like ``float | None``."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        concrete = [a for a in args if a is not type(None)]
        return _base_type(concrete[0])[0], type(None) in args
    origin = typing.get_origin(tp)
    return (origin or tp), False


def _error(name: str, msg: str) -> ConfigError:
    e = ConfigError(msg)
    e.setting = name  # type: ignore[attr-defined]
    return e


def _coerce(name: str, value: Any) -> Any:
    """``value`` as the type of setting ``name`` (strings from YAML or the environment converted)."""
    typ, nullable = _base_type(_hints()[name])
    if value is None:
        if nullable:
            return None
        raise _error(name, f"{name} must be given (it has no 'none' value).")
    if typ is float:
        if isinstance(value, bool):
            raise _error(name, f"{name} must be a number, got {value!r}.")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                raise _error(name, f"{name} must be a number, got {value!r}.{_HINT.get(name, '')}") from None
        raise _error(name, f"{name} must be a number, got {type(value).__name__} {value!r}.")
    if typ is bool:
        if nullable and isinstance(value, str) and value.strip().lower() == "auto":
            return None
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise _error(name, f"{name} must be true or false{' (or auto)' if nullable else ''}, got {value!r}.")
    if typ is str:
        if isinstance(value, bool):
            raise _error(name, f"{name} must be a string, got {value!r}.")
        if isinstance(value, (int, float)):
            return str(value)  # `project: 2024` in YAML
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if not isinstance(value, str):
            raise _error(name, f"{name} must be a string, got {type(value).__name__} {value!r}.")
        return value
    if typ is dict:
        if not isinstance(value, dict):
            raise _error(name, f"{name} must be a mapping of names to values, got {type(value).__name__}.")
        return dict(value)
    return value


_HINT = {
    "interval_s": " The sampling interval is in seconds, e.g. 1.0, or 0.1 for 10 Hz.",
    "flush_interval_s": " How often samples are written to the store, in seconds, e.g. 5.",
    "pue": " PUE is facility / IT energy, e.g. 1.1 (a hyperscale data centre) or 1.0 (a laptop).",
    "price_per_kwh": " The electricity price per kWh in your currency, e.g. 0.25.",
    "cpu_tdp_w": " The CPU package's thermal design power in watts, e.g. 125.",
}


def _check(c: TrackerConfig) -> None:
    def num(name: str, lo: float, hi: float, lo_open: bool = False) -> None:
        v = getattr(c, name)
        if v is not None:
            try:
                limits.number(name, v, lo, hi, hint=_HINT.get(name, ""), lo_open=lo_open)
            except ConfigError as e:
                raise _error(name, str(e)) from None

    num("interval_s", *limits.INTERVAL_S)
    num("flush_interval_s", *limits.FLUSH_INTERVAL_S)
    num("pue", *limits.PUE)
    num("price_per_kwh", *limits.PRICE_PER_KWH)
    num("cpu_tdp_w", *limits.CPU_TDP_W)
    try:
        limits.text(
            "project",
            c.project,
            limits.PROJECT_CHARS,
            hint=" A project groups runs in the store, e.g. 'llama-ft'.",
        )
    except ConfigError as e:
        raise _error("project", str(e)) from None
    if c.currency is not None:
        try:
            object.__setattr__(c, "currency", limits.currency(c.currency))
        except ConfigError as e:
            raise _error("currency", str(e)) from None
    if c.location is not None:
        try:
            limits.text("location", c.location, limits.LOCATION_CHARS, hint=" `greenlm locations` lists them.")
        except ConfigError as e:
            raise _error("location", str(e)) from None
    if c.attribution not in ATTRIBUTIONS:
        raise _error("attribution", f"attribution must be one of {', '.join(ATTRIBUTIONS)}, got {c.attribution!r}.")
    setting = c.pue_setting.lower().replace("_", "-")
    if setting not in PUE_SETTINGS:
        raise _error("pue_setting", f"pue_setting must be one of {', '.join(PUE_SETTINGS)}, got {c.pue_setting!r}.")
    object.__setattr__(c, "pue_setting", setting)
    for name in ("store", "server", "runtime_dir"):
        v = getattr(c, name)
        if v is not None and not v.strip():
            what = "path" if name == "runtime_dir" else "URL"
            raise _error(name, f"{name} must be a {what} when given, got an empty string.")
    try:
        import json

        size = len(json.dumps(c.metadata, default=str))
    except (TypeError, ValueError) as e:
        raise _error("metadata", f"metadata must be JSON-serialisable: {e}") from None
    if size > limits.METADATA_JSON_BYTES:
        raise _error("metadata", f"metadata is {size} bytes as JSON; at most {limits.METADATA_JSON_BYTES} are kept.")


# ----------------------------------------------------------------- sources
#: Environment variable of each setting.
ENV_VARS: dict[str, str] = {
    "GREENLM_PROJECT": "project",
    "GREENLM_LOCATION": "location",
    "GREENLM_PUE": "pue",
    "GREENLM_PUE_SETTING": "pue_setting",
    "GREENLM_PRICE_PER_KWH": "price_per_kwh",
    "GREENLM_CURRENCY": "currency",
    "GREENLM_INTERVAL_S": "interval_s",
    "GREENLM_FLUSH_INTERVAL_S": "flush_interval_s",
    "GREENLM_STORE": "store",
    "GREENLM_CPU_TDP_W": "cpu_tdp_w",
    "GREENLM_ATTRIBUTION": "attribution",
    "GREENLM_RAPL_ROOT": "rapl_root",
    "GREENLM_GPUS": "gpus",
    "GREENLM_SERVER": "server",
    "GREENLM_TOKEN": "token",
    "GREENLM_DISTRIBUTED": "distributed",
    "GREENLM_RUNTIME_DIR": "runtime_dir",
}
_ENV_OF = {v: k for k, v in ENV_VARS.items()}


def _from_env() -> dict[str, Any]:
    return {key: raw for var, key in ENV_VARS.items() if (raw := os.environ.get(var)) not in (None, "")}


def config_file_path() -> Path:
    """``$GREENLM_CONFIG`` or ``$GREENLM_HOME/config.yaml``."""
    return Path(os.environ.get("GREENLM_CONFIG") or greenlm_home() / "config.yaml")


#: A config file larger than this is not a config file.
MAX_CONFIG_BYTES = 256 * 1024


def _from_file() -> dict[str, Any]:
    path = config_file_path()
    explicit = "GREENLM_CONFIG" in os.environ
    if not path.exists():
        if explicit:
            raise ConfigError(f"GREENLM_CONFIG points to {path}, which does not exist.")
        return {}
    if path.is_dir():
        raise ConfigError(f"The config file {path} is a directory; it must be a YAML file such as 'location: DEU'.")
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"Cannot read the config file {path}: {e.strerror or e}.") from e
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"The config file {path} is larger than {MAX_CONFIG_BYTES // 1024} KiB; is it the right file?"
        )
    data = load_yaml(raw, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"The config file {path} must be a YAML mapping (key: value), got {type(data).__name__}.")
    return {str(k): v for k, v in data.items()}


def load_yaml(text: str | bytes, where: str) -> Any:
    """Parse user-supplied YAML safely: no aliases (a few hundred bytes of nested aliases can
    expand to gigabytes), no Python objects, and an error message that quotes none of the input.
    """
    import yaml

    class _NoAliases(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, "YAML aliases (*name) are not accepted here", event.start_mark
                )
            return super().compose_node(parent, index)

    try:
        return yaml.load(text, Loader=_NoAliases)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or "not valid YAML"
        raise ConfigError(f"{where}: {problem}{at}. It must be YAML such as 'location: DEU'.") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{where}: not readable as UTF-8 YAML ({type(e).__name__}).") from None
