"""One set of limits on what greenlm accepts, enforced alike by the tracker, the store and the server.

A name that the tracker accepts must fit the store's columns and pass the server's
validation, or a run is refused somewhere downstream where nobody sees it (a 200-character
nested phase path once overflowed PostgreSQL's ``VARCHAR(512)`` and blocked a team
server's outbox). So every length and range lives here, once: the tracker's arguments and
config (``config.py``), the store's column sizes (``store/schema.py``) and the server's
pydantic models (``server/models.py``) all read these constants, and a test checks that the
three agree.

Ranges are what is physically plausible, wide enough for any real job and tight enough to
refuse typos and overflow (``--pue 1e308``, a ``1e29`` J sample).
"""

from __future__ import annotations

import math
import re

from greenlm.errors import ConfigError

# ----------------------------------------------------------------- lengths (characters)
#: A run id (uuid4 hex is 32; room for prefixed ids of other tools).
RUN_ID_CHARS = 64
#: Project names.
PROJECT_CHARS = 256
#: One phase name (one segment of a path).
PHASE_NAME_CHARS = 128
#: A full phase path (``train/forward/attention``), and how deep phases may nest.
PHASE_PATH_CHARS = 512
PHASE_DEPTH = 16
#: A component (device) name, e.g. ``gpu:0``, ``node-12/cpu:package-0``.
COMPONENT_CHARS = 128
#: Location codes (``aws:us-east-1``), host names.
LOCATION_CHARS = 64
HOST_CHARS = 256
#: ISO 4217 currency code.
CURRENCY_CHARS = 3
#: A run's metadata as JSON, in bytes; warnings: how many and how long each.
METADATA_JSON_BYTES = 64 * 1024
WARNINGS_MAX = 200
WARNING_CHARS = 2000
#: Error text kept with a run.
ERROR_CHARS = 4000

# ----------------------------------------------------------------- ranges
#: Sampling interval, seconds.
INTERVAL_S = (0.001, 3600.0)
#: Store flush interval, seconds.
FLUSH_INTERVAL_S = (0.01, 86400.0)
#: Power usage effectiveness (facility / IT energy): >= 1; the worst surveyed sites are
#: about 2.5 (Uptime Institute), so 5 leaves room and refuses typos.
PUE = (1.0, 5.0)
#: Electricity price per kWh, in the currency's main unit: high enough for any currency
#: (a kWh costs about 1,500 IDR), low enough to refuse overflow.
PRICE_PER_KWH = (0.0, 1e5)
#: A CPU package's TDP, watts (the largest server parts are about 500 W).
CPU_TDP_W = (0.1, 2000.0)
#: Steps marked at once.
STEP_MAX = 10**12
#: One component's power, watts (a whole 8-GPU server is about 10 kW).
POWER_W_MAX = 1e6
#: A run's energy, joules (1e16 J = 2.8 TWh, far above any training run published).
ENERGY_J_MAX = 1e16
#: Duration of a run or phase, seconds (ten years).
DURATION_S_MAX = 10 * 365.25 * 86400

# ----------------------------------------------------------------- estimator inputs
# Wide enough for any model or run published (the largest: ~2e12 parameters, ~4e13 tokens,
# ~5e26 FLOPs, ~1e5 accelerators), tight enough that every figure derived from them stays
# finite (``--params 1e300 --tokens 1e300`` once printed ``inf MWh``).
#: Parameters of a model (total or active per token).
PARAMS = (1.0, 1e15)
#: Tokens processed (training, fine-tuning).
TOKENS = (1.0, 1e17)
#: Total FLOPs of a run.
FLOPS = (1.0, 1e33)
#: Accelerators of a job.
CHIPS = (1, 10**7)
#: Accelerator-hours of a job, and wall-clock hours.
CHIP_HOURS = (0.0, 1e11)
HOURS = (0.0, 1e6)
#: Average power of one accelerator with its host share, watts.
CHIP_POWER_W = (0.0, 1e5)
#: Grid intensity, kg CO2e per kWh (the dirtiest grids are about 1.1).
INTENSITY_KG_PER_KWH = (0.0, 5.0)
#: Development runs as a multiple of the final run.
DEVELOPMENT_FACTOR = (0.0, 100.0)
#: Model shape: layers, widths, sequence length, LoRA rank, parallel degrees.
LAYERS = (1, 100_000)
WIDTH = (1, 10**8)
SEQ_LEN = (1, 10**9)
LORA_RANK = (1, 10**6)
PARALLEL = (1, 10**6)
#: Serving: queries a day, days, tokens per query, batch, KV-cache bytes per token.
QUERIES_PER_DAY = (0.0, 1e14)
DAYS = (0.0, 36525.0)
TOKENS_PER_QUERY = (0.0, 1e9)
BATCH = (1.0, 1e7)
KV_BYTES_PER_TOKEN = (0.0, 1e10)
HOURS_PER_DAY = (0.0, 24.0)

#: TCP ports greenlm listens on or connects to.
PORT = (1, 65535)

_CURRENCY = re.compile(r"^[A-Z]{3}$")


def number(name: str, value: object, lo: float, hi: float, *, hint: str = "", lo_open: bool = False) -> float:
    """``value`` as a finite float within ``[lo, hi]`` (``(lo, hi]`` if ``lo_open``), or ConfigError."""
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a number, got {value!r}.{hint}")
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}.{hint}") from None
    if not math.isfinite(x):
        raise ConfigError(f"{name} must be a finite number, got {value!r}.{hint}")
    if (x <= lo if lo_open else x < lo) or x > hi:
        lo_txt = f"> {lo:g}" if lo_open else f">= {lo:g}"
        raise ConfigError(f"{name} must be {lo_txt} and <= {hi:g}, got {x:g}.{hint}")
    return x


def whole(name: str, value: object, lo: int, hi: int, *, hint: str = "") -> int:
    """``value`` as an ``int`` within ``[lo, hi]`` (a float with no fraction is accepted), or ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a whole number ({lo}-{hi}), got {value!r}.{hint}")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise ConfigError(f"{name} must be a whole number ({lo}-{hi}), got {value!r}.{hint}")
    n = int(value)
    if not lo <= n <= hi:
        raise ConfigError(f"{name} must be {lo}-{hi}, got {n}.{hint}")
    return n


def port(name: str, value: object) -> int:
    """A TCP port, 1-65535."""
    return whole(name, value, *PORT, hint=" Give a port such as 8787.")


def text(name: str, value: object, max_chars: int, *, allow_empty: bool = False, hint: str = "") -> str:
    """``value`` as a string of at most ``max_chars`` characters, without NUL or control lines."""
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {type(value).__name__} {value!r}.{hint}")
    if not allow_empty and not value.strip():
        raise ConfigError(f"{name} must not be empty.{hint}")
    if len(value) > max_chars:
        raise ConfigError(f"{name} is {len(value)} characters long; at most {max_chars} are allowed.{hint}")
    if "\x00" in value or "\n" in value or "\r" in value:
        raise ConfigError(f"{name} must be one line without NUL characters, got {value[:40]!r}.{hint}")
    return value


def currency(value: object) -> str:
    """An ISO 4217 code (``EUR``); lower case is accepted and upper-cased."""
    if not isinstance(value, str) or not _CURRENCY.match(value.strip().upper()):
        raise ConfigError(f"currency must be a 3-letter ISO 4217 code such as USD, EUR or JPY, got {value!r}.")
    return value.strip().upper()


def phase_name(name: object, parent_path: str | None) -> str:
    """Check one phase name and the path it makes; returns the path."""
    if not isinstance(name, str) or not name or "/" in name:
        raise ConfigError(f"phase name must be a non-empty string without '/', got {name!r}.")
    text("phase name", name, PHASE_NAME_CHARS)
    path = f"{parent_path}/{name}" if parent_path else name
    depth = path.count("/") + 1
    if depth > PHASE_DEPTH:
        raise ConfigError(f"phases nest at most {PHASE_DEPTH} deep; {path[:80]!r}... is {depth} deep.")
    if len(path) > PHASE_PATH_CHARS:
        raise ConfigError(
            f"the phase path {path[:60]!r}... is {len(path)} characters; at most {PHASE_PATH_CHARS} are "
            "allowed (shorter names, or fewer nested phases)."
        )
    return path


def steps(n: object) -> int:
    """A count of steps to mark: a positive integer."""
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0 or n > STEP_MAX:
        raise ConfigError(f"step(n) takes a positive whole number of steps (1, 2, ...), got {n!r}.")
    return n
