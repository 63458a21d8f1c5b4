"""The argument types and the parser class of every ``greenlm`` command.

A value given on the command line is checked where it is parsed, so that a wrong one is
refused with argparse's usage error (exit code 2, naming the option, saying what would be
right) before any work starts: no store opened, no file created, no model loaded, no server
or child process started. The ranges are those of :mod:`greenlm.limits`, the same the
Python API enforces, so ``--pue 1e308`` and ``EnergyTracker(pue=1e308)`` are refused alike.

Each type is a small callable object that also says what it accepts (``kind``, ``lo``,
``hi``, ``max_chars``): the bad-input test (``tests/test_bad_input.py``) walks the parser
and picks its wrong values from that, so a new option is covered as soon as it is added.

:class:`Parser` accepts negative numbers as values (``--params -7e9`` is refused for being
negative, not met with argparse's "expected one argument").
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import re
import tempfile
from collections.abc import Sequence
from typing import Any

from greenlm import limits

__all__ = [
    "CURRENCY",
    "INTERVAL_S",
    "PORT",
    "PRICE",
    "PROJECT",
    "PUE",
    "RUN_ID",
    "STORE_URL",
    "Choice",
    "InputFile",
    "Number",
    "OutputDir",
    "OutputFile",
    "Parser",
    "Text",
    "Url",
    "Whole",
    "WholeList",
    "check_output_file",
]

#: Longest path or URL accepted (Linux's PATH_MAX).
PATH_CHARS = 4096


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` that reads ``-7e9``, ``-.5``, ``-inf`` and ``-nan`` as values.

    argparse takes a token starting with ``-`` for an option unless it looks like a plain
    integer or decimal, so ``--params -7e9`` failed with "expected one argument". Here every
    token that starts like a number is a value (greenlm has no option that starts with a
    digit), which the option's type then accepts or refuses with a reason. Sub-parsers are
    of the same class.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-(\d|\.\d|inf(inity)?$|nan$)", re.IGNORECASE)


def _pretty(x: float) -> str:
    """A bound in help and errors: ``65535``, ``0.001``, ``1e+15`` (exact, short)."""
    return f"{int(x)}" if float(x).is_integer() and abs(x) < 1e7 else f"{x:g}"


def _show(text: str) -> str:
    """The value the user typed, cut so that an error message stays short, credentials masked."""
    from greenlm.redact import redact_text

    shown = repr(redact_text(text if len(text) <= 40 else text[:40] + "..."))
    return shown + (f" ({len(text)} characters)" if len(text) > 40 else "")


class Number:
    """A finite float within ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``)."""

    kind = "number"

    def __init__(self, lo: float, hi: float, *, lo_open: bool = False, example: str = "", unit: str = "") -> None:
        self.lo, self.hi, self.lo_open = float(lo), float(hi), lo_open
        self.example = example or _pretty(hi if lo_open and lo == 0 and hi <= 1 else max(lo, min(hi, 1.0)))
        self.unit = f" {unit}" if unit else ""
        self.__name__ = "number"

    def describe(self) -> str:
        """``> 0 and <= 1``, as said in an error message."""
        lo = f"> {_pretty(self.lo)}" if self.lo_open else f">= {_pretty(self.lo)}"
        return f"{lo} and <= {_pretty(self.hi)}{self.unit}"

    def __call__(self, text: str) -> float:
        if len(text) > 100:
            raise argparse.ArgumentTypeError(f"expected a number such as {self.example}, got {_show(text)}")
        try:
            x = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number such as {self.example}, got {_show(text)}") from None
        if not math.isfinite(x):
            raise argparse.ArgumentTypeError(f"expected a finite number ({self.describe()}), got {text!r}")
        if (x <= self.lo if self.lo_open else x < self.lo) or x > self.hi:
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {x:g}")
        return x

    def __repr__(self) -> str:
        return f"Number({self.describe()})"


class Whole:
    """A whole number within ``[lo, hi]``; ``1e4`` is read as 10000, ``1.5`` is refused."""

    kind = "integer"

    def __init__(self, lo: int, hi: int, *, what: str = "", example: str = "") -> None:
        self.lo, self.hi = int(lo), int(hi)
        self.what = f" {what}" if what else ""
        self.example = example or str(max(lo, min(hi, 1)))
        self.__name__ = "whole number"

    def describe(self) -> str:
        return f"{self.lo}-{self.hi}" if self.hi - self.lo < 10**7 else f">= {self.lo} and <= {_pretty(self.hi)}"

    def __call__(self, text: str) -> int:
        bad = argparse.ArgumentTypeError(
            f"expected a whole number{self.what} ({self.describe()}), such as {self.example}, got {_show(text)}"
        )
        if len(text) > 100:
            raise bad
        try:
            n = int(text)
        except ValueError:
            try:
                x = float(text)
            except ValueError:
                raise bad from None
            if not math.isfinite(x) or not x.is_integer():
                raise bad from None
            n = int(x)
        if not self.lo <= n <= self.hi:
            raise argparse.ArgumentTypeError(f"must be a whole number{self.what} ({self.describe()}), got {n}")
        return n

    def __repr__(self) -> str:
        return f"Whole({self.describe()})"


class Text:
    """A one-line string of 1..``max_chars`` characters (no NUL, no line break)."""

    kind = "text"

    def __init__(self, max_chars: int, *, allow_empty: bool = False, example: str = "") -> None:
        self.max_chars = max_chars
        self.allow_empty = allow_empty
        self.example = example
        self.__name__ = "text"

    def check(self, text: str) -> str:
        hint = f" (for example {self.example})" if self.example else ""
        if not self.allow_empty and not text.strip():
            raise argparse.ArgumentTypeError(f"must not be empty{hint}")
        if len(text) > self.max_chars:
            raise argparse.ArgumentTypeError(
                f"is {len(text)} characters long; at most {self.max_chars} are allowed{hint}"
            )
        if "\x00" in text or "\n" in text or "\r" in text:
            raise argparse.ArgumentTypeError(f"must be one line without NUL characters, got {_show(text)}")
        return text

    def __call__(self, text: str) -> str:
        return self.check(text)

    def __repr__(self) -> str:
        return f"Text(<= {self.max_chars})"


class Currency(Text):
    """An ISO 4217 code; lower case is upper-cased."""

    def __init__(self) -> None:
        super().__init__(limits.CURRENCY_CHARS, example="USD")

    def __call__(self, text: str) -> str:
        if len(text) > 100:
            text = text[:100]
        try:
            return limits.currency(text)
        except limits.ConfigError:
            raise argparse.ArgumentTypeError(
                f"must be a 3-letter ISO 4217 code such as USD, EUR or JPY, got {_show(text)}"
            ) from None


class StoreUrl(Text):
    """A store URL: ``sqlite:///path/runs.db`` or ``postgresql+psycopg://user@host/db``."""

    _SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")

    def __init__(self) -> None:
        super().__init__(PATH_CHARS, example="sqlite:///runs.db")

    def __call__(self, text: str) -> str:
        self.check(text)
        if not self._SCHEME.match(text.strip()):
            raise argparse.ArgumentTypeError(
                f"expected a store URL such as sqlite:///path/to/runs.db or "
                f"postgresql+psycopg://user@host/db, got {_show(text)}"
            )
        return text


class Url(Text):
    """An ``http://`` or ``https://`` URL with a host (and a valid port, if given)."""

    def __init__(self, *, example: str = "http://127.0.0.1:8000") -> None:
        super().__init__(PATH_CHARS, example=example)

    def __call__(self, text: str) -> str:
        import urllib.parse

        self.check(text)
        bad = argparse.ArgumentTypeError(
            f"expected an http:// or https:// URL such as {self.example}, got {_show(text)}"
        )
        try:
            u = urllib.parse.urlsplit(text.strip())
            port = u.port
        except ValueError:
            raise bad from None
        if u.scheme not in ("http", "https") or not u.hostname or port == 0:
            raise bad
        return text.strip()


class WholeList(Text):
    """Comma-separated whole numbers within ``[lo, hi]`` (``1,2,4,8``), as a list."""

    kind = "text"

    def __init__(self, lo: int, hi: int, *, max_items: int = 64, example: str = "1,2,4,8") -> None:
        super().__init__(1000, example=example)
        self.lo, self.hi, self.max_items = lo, hi, max_items

    def __call__(self, text: str) -> list[int]:  # type: ignore[override]
        self.check(text)
        bad = argparse.ArgumentTypeError(
            f"expected comma-separated whole numbers {self.lo}-{self.hi} such as {self.example}, got {_show(text)}"
        )
        items = [x.strip() for x in text.split(",") if x.strip()]
        if not items or len(items) > self.max_items:
            raise bad
        try:
            out = [int(x) for x in items]
        except ValueError:
            raise bad from None
        if any(not self.lo <= n <= self.hi for n in out):
            raise bad
        return out


class Choice(Text):
    """One of a fixed set of words, case-insensitive; for options whose choices argparse would list badly."""

    def __init__(self, choices: Sequence[str]) -> None:
        super().__init__(64)
        self.choices = tuple(choices)

    def __call__(self, text: str) -> str:
        t = text.strip().lower()
        if t not in self.choices:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(self.choices)}, got {_show(text)}")
        return t


class InputFile(Text):
    """A file that exists and can be read (``--config plan.yaml``, ``--bench bench.json``)."""

    kind = "input-file"

    def __init__(
        self,
        *,
        example: str = "",
        allow_dir: bool = False,
        as_path: bool = False,
        dir_holds: Sequence[str] = (),
        dir_what: str = "results",
    ) -> None:
        super().__init__(PATH_CHARS, example=example)
        self.allow_dir, self.as_path, self.dir_holds = allow_dir or bool(dir_holds), as_path, tuple(dir_holds)
        self.dir_what = dir_what

    def __call__(self, text: str) -> Any:
        self.check(text)
        p = os.path.expanduser(text)
        if os.path.isdir(p) and not self.allow_dir:
            raise argparse.ArgumentTypeError(f"{text} is a folder; give a file")
        if not os.path.exists(p):
            raise argparse.ArgumentTypeError(f"{text}: no such {'file or folder' if self.allow_dir else 'file'}")
        if not os.access(p, os.R_OK):
            raise argparse.ArgumentTypeError(f"{text}: not readable (permission denied)")
        if self.dir_holds and os.path.isdir(p) and not any(os.path.isfile(os.path.join(p, n)) for n in self.dir_holds):
            raise argparse.ArgumentTypeError(
                f"No {self.dir_what} in {text}: expected {' or '.join(self.dir_holds)} there"
            )
        return pathlib.Path(text) if self.as_path else text


def check_output_file(path: str, example: str = "out.csv") -> None:
    """Raise ``ValueError`` with the reason if greenlm cannot create or replace the file ``path``.

    Checked before any work starts; nothing is created by the check itself.
    """
    p = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(p):
        raise ValueError(f"{path} is a folder; give a file path, e.g. {example}")
    folder = os.path.dirname(p) or "."
    if not os.path.isdir(folder):
        raise ValueError(f"{path}: the folder {folder} does not exist; create it first or choose another path")
    if os.path.exists(p) and not os.access(p, os.W_OK):
        raise ValueError(f"{path}: the file is not writable (permission denied)")
    try:
        if os.path.exists(p):  # opened to append without writing: refuses /proc files, even for root
            with open(p, "ab"):
                pass
        # greenlm replaces files atomically through a temporary file in the same folder: an unnamed
        # one (O_TMPFILE) shows that works there and leaves nothing behind
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ValueError(f"{path}: cannot be written ({e.strerror or e}); choose another path") from None
    if not os.path.exists(p) and not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{path}: cannot create files in {folder} (permission denied)")


class OutputFile(Text):
    """A file greenlm will write: its folder must exist and be writable (nothing is created here)."""

    kind = "output-file"

    def __init__(self, *, example: str = "out.csv") -> None:
        super().__init__(PATH_CHARS, example=example)

    def __call__(self, text: str) -> str:
        self.check(text)
        try:
            check_output_file(text, self.example)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return text


class OutputDir(Text):
    """A folder greenlm will write into (created if missing; its parent must exist and be writable)."""

    kind = "output-dir"

    def __init__(self, *, example: str = "results", as_path: bool = False) -> None:
        super().__init__(PATH_CHARS, example=example)
        self.as_path = as_path

    def __call__(self, text: str) -> Any:
        checked = self._check_dir(text)
        return pathlib.Path(checked) if self.as_path else checked

    def _check_dir(self, text: str) -> str:
        self.check(text)
        p = os.path.abspath(os.path.expanduser(text))
        if os.path.exists(p) and not os.path.isdir(p):
            raise argparse.ArgumentTypeError(f"{text} is a file; give a folder, e.g. {self.example}")
        if os.path.isdir(p):
            if not os.access(p, os.W_OK | os.X_OK):
                raise argparse.ArgumentTypeError(f"{text}: the folder is not writable (permission denied)")
            return text
        parent = os.path.dirname(p)
        if not os.path.isdir(parent):
            raise argparse.ArgumentTypeError(f"{text}: the folder {parent} does not exist; create it first")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"{text}: cannot create a folder in {parent} (permission denied)")
        return text


# ------------------------------------------------------------------ the shared options' types
#: TCP port to listen on.
PORT = Whole(*limits.PORT, example="8787")
#: Project names (``--project``).
PROJECT = Text(limits.PROJECT_CHARS, example="bert-ft")
#: Grid locations (``--location``): the code is looked up later, with close matches.
LOCATION = Text(limits.LOCATION_CHARS, example="DEU, US-CA or aws:us-east-1")
#: Store URLs and paths (``--store``).
STORE_URL = StoreUrl()
#: Run ids or their prefixes.
RUN_ID = Text(limits.RUN_ID_CHARS, example="3b0c81ec")
#: Host names and addresses to bind or reach.
HOST = Text(limits.HOST_CHARS, example="127.0.0.1")
#: Tracker settings, with the ranges ``TrackerConfig`` enforces.
PUE = Number(*limits.PUE, example="1.2")
PRICE = Number(*limits.PRICE_PER_KWH, example="0.25")
CPU_TDP_W = Number(*limits.CPU_TDP_W, unit="W", example="65")
INTERVAL_S = Number(*limits.INTERVAL_S, unit="s", example="0.5")
CURRENCY = Currency()
#: A duration given in seconds (timeouts, windows, grace periods): up to a day...
SECONDS = Number(0.0, 86400.0, lo_open=True, unit="s", example="30")
#: ... or up to ten years for how long a sidecar runs.
LONG_SECONDS = Number(0.0, limits.DURATION_S_MAX, lo_open=True, unit="s", example="3600")
#: A count of things to do (requests, repeats, samples).
COUNT = Whole(1, 10**9, example="16")
#: A fraction in (0, 1].
FRACTION = Number(0.0, 1.0, lo_open=True, example="0.5")
#: A free-form label or name (model labels, titles, token names).
NAME = Text(256, example="gpt2")
#: Process ids (Linux's pid_max is at most 2**22).
PID = Whole(1, 2**22, example="12345")
#: ``KEY=VALUE`` facts (``--meta``).
META = Text(limits.METADATA_JSON_BYTES // 4, example="params=125e6")


def meta_items(items: Sequence[str], flag: str = "--meta") -> dict[str, Any]:
    """``KEY=VALUE`` strings to a dict (values read as JSON when they parse, else kept as text)."""
    import json

    from greenlm.errors import ConfigError

    out: dict[str, Any] = {}
    for it in items:
        key, sep, raw = it.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} expects KEY=VALUE, such as params=125e6, got {_show(it)}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        if isinstance(value, float) and not math.isfinite(value):
            value = raw  # NaN / Infinity are not JSON: keep what the user wrote
        out[key] = value
    return out


#: The help of every --store option.
STORE_HELP = "store URL, e.g. sqlite:///runs.db (default: $GREENLM_STORE or runs.db in $GREENLM_HOME)"


def add_tracker_options(
    p: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    project_help: str = "project name (default: $GREENLM_PROJECT or 'default')",
    interval_default: float | None = None,
    interval_help: str = "sampling interval in seconds (default 1)",
    attribution_help: str = "charge the process tree or the machine",
    meta_example: str = "params=125e6, tokens=2e9, hardware=A100",
) -> None:
    """The measurement options every measuring command shares (``greenlm track``, ``greenlm serve``).

    Each value is checked where it is parsed (the ranges of :mod:`greenlm.limits`); the
    destinations are the :class:`~greenlm.config.TrackerConfig` setting names.
    """
    from greenlm.carbon.pue import SETTINGS

    p.add_argument("--project", type=PROJECT, help=project_help)
    p.add_argument(
        "--location",
        type=LOCATION,
        help="grid location: DEU, US-CA, aws:us-east-1, ... (default: world average, flagged)",
    )
    p.add_argument("--pue", type=PUE, metavar="X", help="power usage effectiveness, 1-5 (default: by --setting)")
    p.add_argument(
        "--setting", dest="pue_setting", choices=SETTINGS, metavar="NAME", help=f"PUE default: {', '.join(SETTINGS)}"
    )
    p.add_argument(
        "--price", dest="price_per_kwh", type=PRICE, metavar="X", help="electricity price per kWh, in --currency"
    )
    p.add_argument("--currency", type=CURRENCY, help="ISO 4217 code of --price (default USD)")
    p.add_argument(
        "--interval", dest="interval_s", type=INTERVAL_S, metavar="S", default=interval_default, help=interval_help
    )
    p.add_argument(
        "--cpu-tdp", dest="cpu_tdp_w", type=CPU_TDP_W, metavar="W", help="CPU package TDP in W (overrides the table)"
    )
    p.add_argument("--attribution", choices=["process", "machine"], help=attribution_help)
    p.add_argument("--store", type=STORE_URL, help=STORE_HELP)
    p.add_argument(
        "--meta",
        action="append",
        default=[],
        type=META,
        metavar="KEY=VALUE",
        help=f"record a fact with the run ({meta_example}); repeatable",
    )
