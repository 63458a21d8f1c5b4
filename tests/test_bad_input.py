"""Bad input gets a clear error: the whole command line and the Python API, walked automatically.

The CLI half walks ``greenlm.cli.build_parser()`` (every sub-command, every option, every
positional), so an option added tomorrow is tried tomorrow. Each one gets the wrong values
that fit its kind (wrong type, negative, NaN, inf, huge, empty, 5,000 characters, a missing
or unwritable path) on top of a command line that is otherwise valid, and must answer:
exit code 2, a message naming the option, no traceback, nothing written (no store, no
file), or be listed in ``ACCEPTED`` below with the reason.

``greenlm.cli.main(argv)`` runs in-process (fast on two cores), each call with its own
``GREENLM_HOME`` and working folder. What would start real work (a tracker window, a model,
a server, a child process, a report) is replaced at that boundary by a function that raises
``WorkStarted``: a bad value that gets that far is a finding, and a command line that is
valid apart from the tried option is checked to get that far (so a rejection is about the
value, not about a missing argument). A timer stops any case that hangs.

The API half feeds the same kinds of values to ``EnergyTracker(...)``, ``tracker.step()``,
phase names, ``estimate.train / finetune / inference`` and ``greenlm.monitor`` and expects a
``GreenlmError`` that names the argument, never a ``TypeError``/``AttributeError``/
``OverflowError``, and never an error out of ``__exit__`` into the user's job.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from greenlm import argtypes
from greenlm.cli import build_parser, main

LONG = "x" * 5000


class WorkStarted(BaseException):
    """A command got past its argument checks to real work (raised by the replaced boundaries)."""


class CaseTimeout(BaseException):
    pass


# ----------------------------------------------------------------------------- the walk
@dataclass
class Opt:
    command: tuple[str, ...]
    action: argparse.Action

    @property
    def name(self) -> str:
        return self.action.option_strings[-1] if self.action.option_strings else self.action.dest

    @property
    def names(self) -> list[str]:
        a = self.action
        out = [*a.option_strings, a.dest, a.dest.replace("_", "-"), a.dest.replace("_", " ")]
        if a.metavar and isinstance(a.metavar, str):
            out.append(a.metavar)
        return out


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    own = [a for a in parser._actions if not isinstance(a, SKIP_ACTIONS)]
    if parser.get_default("func") and path and (own or not subs):  # not a group that only prints its help
        yield path, parser
    for s in subs:
        seen = set()
        for name, sp in s.choices.items():
            if id(sp) in seen:  # an alias
                continue
            seen.add(id(sp))
            yield from _commands(sp, (*path, name))


def commands() -> dict[tuple[str, ...], argparse.ArgumentParser]:
    return dict(_commands(build_parser()))


SKIP_ACTIONS = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, SKIP_ACTIONS) and a.help != argparse.SUPPRESS]


def bad_values(action: argparse.Action, tmp: Path) -> list[str]:
    """The wrong values that fit this argument's kind."""
    if action.nargs == 0:  # a flag: nothing to get wrong
        return []
    if action.nargs == argparse.REMAINDER:
        return [""]
    t = action.type
    if action.choices is not None and not isinstance(t, argtypes.Choice):
        return ["bogus", ""]
    kind = getattr(t, "kind", None)
    missing = str(tmp / "no-such-folder" / "f.txt")
    # just past the top of the type's range (--port 70000 for a port), where the type has one
    above = [f"{t.hi * 10:g}" if kind == "number" else str(t.hi + 1)] if hasattr(t, "hi") else []
    if kind == "number" or t is float:
        return ["abc", "", "nan", "inf", "-inf", "-5", "-7e9", "1e308", "-1e308", "9" * 5000, *above]
    if kind == "integer" or t is int:
        return ["abc", "", "1.5", "-5", "nan", "inf", "1e308", "9" * 5000, *above]
    if kind == "output-file":
        return ["", LONG, missing, str(tmp), "/proc/version"]
    if kind == "output-dir":
        return ["", LONG, missing, "/proc/version"]
    if kind == "input-file":
        return ["", LONG, missing, str(tmp)]
    if isinstance(t, argtypes.Choice):
        return ["bogus", "", LONG]
    return ["", LONG]


# ---------------------------------------------------------------------- valid command lines
#: A valid command line for each command (options, then positionals by dest). What is tried
#: replaces the option's value here, or is added.
PLAN = "plan.yaml"
BASE: dict[tuple[str, ...], dict[str, object]] = {
    ("track",): {"cmd": ["--", sys.executable, "-c", "pass"]},
    ("runs", "show"): {"run_id": "abc123"},
    ("estimate", "train"): {"--params": "7e9", "--tokens": "1e12", "--hardware": "A100"},
    ("estimate", "finetune"): {"--params": "7e9", "--tokens": "1e9", "--hardware": "A100"},
    ("estimate", "inference"): {
        "--params": "7e9",
        "--hardware": "A100",
        "--queries-per-day": "1000",
        "--days": "30",
        "--input-tokens": "500",
        "--output-tokens": "200",
    },
    ("estimate", "lifecycle"): {"--config": PLAN},
    ("estimate", "compare"): {"--config": PLAN, "--locations": "FRA,USA"},
    ("report",): {"--estimate": PLAN},
    ("server", "token", "create"): {"name": "alice"},
    ("server", "token", "revoke"): {"id_or_name": "alice"},
    ("slurm", "check"): {"run_id": "abc123"},
    ("serve",): {"cmd": ["--", sys.executable, "-c", "pass"]},
    ("bench", "serve"): {"--url": "http://127.0.0.1:9"},
    ("completion",): {"shell": "bash"},
}


def argv_for(command: tuple[str, ...], parser: argparse.ArgumentParser, override: tuple[str, str] | None) -> list[str]:
    base = dict(BASE.get(command, {}))
    opts: list[str] = []
    tail: list[str] = []
    tried_name = override[0] if override else None
    for a in parser._actions:
        if isinstance(a, SKIP_ACTIONS):
            continue
        key = a.option_strings[0] if a.option_strings else a.dest
        keys = [*a.option_strings, a.dest]
        if tried_name in keys:
            assert override is not None
            if a.option_strings:
                opts += [override[0], override[1]]
            elif a.nargs == argparse.REMAINDER:
                tail = ["--", override[1]]
            else:
                tail.append(override[1])
            continue
        if key not in base:
            continue
        value = base[key]
        if a.option_strings:
            opts += [key, str(value)]
        elif isinstance(value, list):
            tail += value
        else:
            tail.append(str(value))
    return [*command, *opts, *tail]


# --------------------------------------------------------------------------- one call
@dataclass
class Outcome:
    argv: list[str]
    rc: int | None
    out: str
    err: str
    work: str | None = None  # which boundary was reached
    written: list[str] = field(default_factory=list)
    crash: str | None = None  # an exception that escaped main()

    def describe(self) -> str:
        what = f"reached {self.work}" if self.work else f"rc={self.rc}"
        if self.crash:
            what = f"crashed: {self.crash}"
        tail = (self.err or self.out).strip().splitlines()[-1:] if (self.err or self.out).strip() else [""]
        w = f", wrote {self.written}" if self.written else ""
        return f"{' '.join(_short(a) for a in self.argv)}: {what}{w}: {_short(tail[0], 160)}"


def _short(s: str, n: int = 40) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


def _boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the places where real work starts by a function raising WorkStarted."""

    def stop(name: str):
        def f(*_a: object, **_k: object) -> None:
            raise WorkStarted(name)

        return f

    import greenlm.integrations.monitor as monitor
    import greenlm.optimize.lora as lora
    import greenlm.optimize.runner as runner
    import greenlm.report.html as html
    import greenlm.server.app as app
    import greenlm.serving.bench as bench
    import greenlm.serving.serve as serve
    import greenlm.tracking.tracker as tracker

    monkeypatch.setattr(tracker.EnergyTracker, "start", stop("a tracking window"))
    monkeypatch.setattr(monitor.Monitor, "__init__", stop("the serving monitor"))
    monkeypatch.setattr(serve, "serve", stop("the serving proxy"))
    monkeypatch.setattr(bench, "run_bench", stop("the load generator"))
    monkeypatch.setattr(app, "create_app", stop("the web app"))
    monkeypatch.setattr(runner, "optimize", stop("optimize"))
    monkeypatch.setattr(lora, "finetune", stop("optimize finetune"))
    monkeypatch.setattr(html, "render_report", stop("the HTML report"))
    import subprocess

    monkeypatch.setattr(subprocess, "Popen", stop("a child process"))


def _alarm(_signum: int, _frame: object) -> None:
    raise CaseTimeout()


def call(argv: list[str], workdir: Path, monkeypatch: pytest.MonkeyPatch, timeout_s: float = 20.0) -> Outcome:
    """``main(argv)`` in ``workdir`` with its own GREENLM_HOME; what it printed, wrote and reached."""
    from greenlm.store import clear_store_cache

    home = workdir / "home"
    cwd = workdir / "cwd"
    cwd.mkdir(parents=True)
    (cwd / PLAN).write_text(_plan_text())
    before = {p.name for p in cwd.iterdir()}
    monkeypatch.setenv("GREENLM_HOME", str(home))
    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    logging.getLogger("greenlm").addHandler(handler)
    old_cwd = os.getcwd()
    os.chdir(cwd)
    old_alarm = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    o = Outcome(argv, None, "", "")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                o.rc = main(argv)
            except SystemExit as e:
                o.rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except WorkStarted as e:
                o.work = str(e)
            except CaseTimeout:
                o.crash = f"no answer within {timeout_s:g} s"
            except Exception as e:  # what a user would see as a traceback
                import traceback

                o.crash = f"{type(e).__name__}: {e}"
                err.write(traceback.format_exc())
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_alarm)
        os.chdir(old_cwd)
        logging.getLogger("greenlm").removeHandler(handler)
        clear_store_cache()
    o.out, o.err = out.getvalue(), err.getvalue()
    o.written = sorted({p.name for p in cwd.iterdir()} - before)
    if home.exists() and any(home.iterdir()):
        o.written.append(f"GREENLM_HOME: {sorted(p.name for p in home.iterdir())}")
    return o


_PLAN: list[str] = []


def _plan_text() -> str:
    if not _PLAN:
        from greenlm.estimate.plan import example_plan_text

        _PLAN.append(example_plan_text())
    return _PLAN[0]


# ------------------------------------------------------------------ documented acceptances
#: (command, option, value) -> why accepting it is right. ``*`` matches any value.
ACCEPTED: dict[tuple[tuple[str, ...], str, str], str] = {}


def accepted(command: tuple[str, ...], opt: str, value: str) -> str | None:
    return ACCEPTED.get((command, opt, value)) or ACCEPTED.get((command, opt, "*"))


def verdict(opt: Opt, value: str, o: Outcome) -> str | None:
    """None when the answer is right; else what is wrong."""
    if o.crash or "Traceback" in o.err:
        return "traceback"
    if accepted(opt.command, opt.name, value):
        return None
    if o.work:
        return f"accepted: reached {o.work}"
    if o.rc == 0:
        return "accepted: exit code 0"
    if o.written:
        return f"wrote {o.written}"
    if o.rc != 2:
        return f"exit code {o.rc} (2 is a usage error)"
    if not any(n in o.err for n in opt.names):
        return "the error does not name the option"
    if len(o.err) > 4000:
        return f"the error is {len(o.err)} characters long"
    return None


def cases() -> list[tuple[tuple[str, ...], str]]:
    out = []
    for command, parser in commands().items():
        for a in options(parser):
            if a.nargs == 0:
                continue
            out.append((command, a.option_strings[-1] if a.option_strings else a.dest))
    return out


def _find(command: tuple[str, ...], name: str) -> argparse.Action:
    for a in commands()[command]._actions:
        if name in a.option_strings or name == a.dest:
            return a
    raise KeyError(name)


# ----------------------------------------------------------------------------- the tests
def test_every_command_with_required_arguments_has_a_valid_command_line():
    for command, parser in commands().items():
        required = [a for a in options(parser) if a.required and a.nargs not in ("*", "?")]
        for a in required:
            key = a.option_strings[0] if a.option_strings else a.dest
            assert key in BASE.get(command, {}), f"add a valid value of {key} for {' '.join(command)} to BASE"


@pytest.mark.parametrize("command", sorted(commands()), ids=lambda c: "-".join(c))
def test_the_valid_command_line_gets_to_work_or_finishes(command, tmp_path, monkeypatch):
    """The command line the cases start from is valid: a rejection in the cases is the tried value's."""
    _boundaries(monkeypatch)
    o = call(argv_for(command, commands()[command], None), tmp_path / "base", monkeypatch)
    assert not o.crash and "Traceback" not in o.err, o.describe()
    assert o.work or o.rc in (0, 1) or (o.rc == 2 and command in NOT_RUNNABLE_HERE), o.describe()


#: Commands whose valid command line cannot get to work in a fresh home (they read a run
#: that is not there); their cases are still checked for naming the option.
NOT_RUNNABLE_HERE = {("runs", "show"), ("slurm", "check"), ("server", "token", "revoke"), ("estimate", "calibrate")}


RESULTS: list[tuple[str, str | None]] = []


@pytest.fixture(scope="module", autouse=True)
def _summary(request):
    """The counts (inputs tried, answered cleanly); with GREENLM_MATRIX_REPORT=FILE, every case as JSON."""
    yield
    if not RESULTS:
        return
    ok = sum(1 for _, v in RESULTS if v is None)
    line = f"bad-input matrix: {len(RESULTS)} CLI inputs tried, {ok} answered right, {len(RESULTS) - ok} not"
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)
    if os.environ.get("GREENLM_MATRIX_REPORT"):
        import json

        Path(os.environ["GREENLM_MATRIX_REPORT"]).write_text(json.dumps(RESULTS, indent=1))


@pytest.mark.parametrize(("command", "name"), cases(), ids=lambda x: "-".join(x) if isinstance(x, tuple) else x)
def test_bad_values_are_refused_clearly(command, name, tmp_path, monkeypatch):
    _boundaries(monkeypatch)
    a = _find(command, name)
    opt = Opt(command, a)
    problems = []
    for i, value in enumerate(bad_values(a, tmp_path)):
        o = call(argv_for(command, commands()[command], (name, value)), tmp_path / f"c{i}", monkeypatch)
        v = verdict(opt, value, o)
        RESULTS.append((f"{' '.join(command)} {name} {_short(value)!r}", v and f"{v}: {o.describe()}"))
        if v:
            problems.append(f"{_short(value)!r}: {v}: {o.describe()}")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------ the cases named in the issue
@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["runs", "export", "-o", "{tmp}/missing/runs.csv"], "does not exist"),
        (["report", "--estimate", "plan.yaml", "-o", "{tmp}/missing/r.html"], "does not exist"),
        (["server", "openapi", "-o", "{tmp}/missing/openapi.json"], "does not exist"),
        (["server", "openapi", "-o", "{tmp}"], "is a folder"),
        (["monitor", "serve", "--port", "70000"], "argument --port: must be a whole number (1-65535), got 70000"),
        (["dashboard", "--port", "70000"], "argument --port: must be a whole number (1-65535)"),
        (["server", "serve", "--port", "0"], "argument --port: must be a whole number (1-65535)"),
        (["serve", "--port", "70000", "--", "engine"], "argument --port: must be a whole number (1-65535)"),
        (["estimate", "train", "--params", "1e300", "--tokens", "1e300", "--hardware", "A100"], "--params: must be"),
        (["estimate", "train", "--params", "7e9", "--tokens", "1e300", "--hardware", "A100", "--json"], "--tokens"),
        (["estimate", "train", "--params", "-7e9", "--tokens", "1e12", "--hardware", "A100"], "--params: must be >= 1"),
        (["estimate", "train", "--params", "inf", "--tokens", "1e12", "--hardware", "A100"], "finite"),
        (["track", "--price", "1e308", "--", "true"], "argument --price: must be"),
        (["track", "--pue", "1e308", "--", "true"], "argument --pue: must be >= 1 and <= 5"),
        (["track", "--cpu-tdp", "1e30", "--", "true"], "argument --cpu-tdp: must be"),
        (["track", "--project", "p" * 5000, "--", "true"], "5000 characters long"),
        (["track", "--currency", "TOOLONGCURRENCYCODE", "--", "true"], "3-letter ISO 4217 code"),
        (["estimate", "train", "--params", "7e9", "--tokens", "1e12", "--hardware", "A100", "--pue", "1e308"], "--pue"),
        (
            ["estimate", "train", "--params", "7e9", "--tokens", "1e12", "--hardware", "A100", "--price", "1e308"],
            "--price",
        ),
        (
            ["estimate", "inference", "--params", "7e9", "--hardware", "A100", "--currency", "TOOLONGCURRENCYCODE"],
            "ISO",
        ),
        (["monitor", "serve", "--project", "p" * 5000], "5000 characters long"),
    ],
    ids=lambda x: _short(" ".join(x), 60) if isinstance(x, list) else None,
)
def test_the_cases_named_in_the_issue(argv, says, tmp_path, monkeypatch):
    _boundaries(monkeypatch)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    o = call(argv, tmp_path / "c", monkeypatch)
    assert o.rc == 2 and not o.crash and "Traceback" not in o.err, o.describe()
    assert says in o.err, o.describe()
    assert not o.written and not o.work, o.describe()
    assert "inf" not in o.out.lower() and "Infinity" not in o.out and "NaN" not in o.out


def test_monitor_serve_keeps_addr_as_a_hidden_alias_of_host(capsys):
    """One name for one thing: --host everywhere; the old --addr still works but is not offered."""
    p = build_parser()
    assert p.parse_args(["monitor", "serve", "--addr", "127.0.0.2"]).host == "127.0.0.2"
    assert p.parse_args(["monitor", "serve", "--host", "127.0.0.3"]).host == "127.0.0.3"
    assert main(["monitor", "serve", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--host" in out and "--addr" not in out


# ------------------------------------------------------------------------------ the Python API
BAD_NUMBERS = [-5, float("nan"), float("inf"), -float("inf"), 1e308, "abc", True, [1]]


def _api_ok(f, *, names: tuple[str, ...]) -> str | None:
    """None when ``f()`` raises a GreenlmError naming one of ``names``; else what happened."""
    from greenlm.errors import GreenlmError

    try:
        f()
    except GreenlmError as e:
        msg = str(e)
        if not any(n in msg for n in names):
            return f"{type(e).__name__} does not name {names[0]}: {msg[:120]}"
        return None
    except Exception as e:
        return f"{type(e).__name__}: {str(e)[:120]}"
    return "accepted"


API_RESULTS: list[tuple[str, str | None]] = []


@pytest.mark.parametrize(
    "setting", ["pue", "price_per_kwh", "cpu_tdp_w", "interval_s", "project", "currency", "location"]
)
def test_energy_tracker_refuses_bad_settings(setting, tmp_path, monkeypatch):
    from greenlm import EnergyTracker

    monkeypatch.setenv("GREENLM_HOME", str(tmp_path / "home"))
    values: list[object] = [*BAD_NUMBERS] if setting not in ("project", "currency", "location") else []
    values += ["", "x" * 5000, "a\nb"]  # a number where text is expected is read as its text ("5")
    if setting == "currency":
        values.append("TOOLONGCURRENCYCODE")
    problems = []
    for v in values:
        r = _api_ok(lambda v=v: EnergyTracker(**{setting: v}), names=(setting, setting.split("_")[0]))
        API_RESULTS.append((f"EnergyTracker({setting}={_short(repr(v))})", r))
        if r:
            problems.append(f"{setting}={_short(repr(v))}: {r}")
    assert not problems, "\n".join(problems)
    assert not (tmp_path / "home" / "runs.db").exists()


def test_step_and_phase_refuse_bad_values_and_the_run_still_completes(tmp_path, monkeypatch):
    """Wrong use inside the job is a ConfigError where it happens; __exit__ never raises it again."""
    from greenlm import EnergyTracker

    monkeypatch.setenv("GREENLM_HOME", str(tmp_path / "home"))
    problems = []
    with EnergyTracker(interval_s=0.05, project="bad-input") as tr:
        for v in [-5, 0, 1.5, "3", float("inf"), float("nan"), True, None, 10**30]:
            r = _api_ok(lambda v=v: tr.step(v), names=("step",))
            API_RESULTS.append((f"step({v!r})", r))
            if r:
                problems.append(f"step({v!r}): {r}")
        for name in ["", "x" * 5000, None, 5, "a\nb", "a/b"]:

            def phase(name=name):
                with tr.phase(name):
                    pass

            r = _api_ok(phase, names=("phase",))
            API_RESULTS.append((f"phase({_short(repr(name))})", r))
            if r:
                problems.append(f"phase({_short(repr(name))}): {r}")
        tr.step(2)
    assert not problems, "\n".join(problems)
    assert tr.result is not None and tr.result.status == "completed" and tr.steps == 2


ESTIMATE_BAD = [
    ("params", [0, -7e9, 1e300, float("inf"), float("nan"), "7e9", True]),
    ("tokens", [-1, 1e300, float("inf"), "x"]),
    ("chips", [0, -1, 1.5, 1e30, float("nan"), "8"]),
    ("mfu", [0, -0.1, 2, float("nan")]),
    ("pue", [0.5, 1e308, float("inf")]),
    ("price_per_kwh", [-1, 1e308]),
    ("intensity_kg_per_kwh", [-1, 1e308]),
    ("hours", [-3, 1e300]),
    ("power_w", [-1, 1e308]),
    ("location", ["x" * 5000, "", 5]),
    ("currency", ["TOOLONGCURRENCYCODE", 5]),
    ("hardware", [5, "x" * 5000, ""]),
]


@pytest.mark.parametrize("fn", ["train", "finetune"])
def test_estimators_refuse_bad_values_by_name(fn):
    from greenlm import estimate

    f = getattr(estimate, fn)
    base = {"params": 7e9, "tokens": 1e12, "hardware": "A100"}
    problems = []
    for name, values in ESTIMATE_BAD:
        for v in values:
            r = _api_ok(lambda name=name, v=v: f(**{**base, name: v}), names=(name, name.replace("_", " ")))
            API_RESULTS.append((f"estimate.{fn}({name}={_short(repr(v))})", r))
            if r and not (name == "hardware" and r.startswith("HardwareNotFound")):
                problems.append(f"{name}={_short(repr(v))}: {r}")
    assert not problems, "\n".join(problems)


def test_inference_estimate_refuses_bad_values_by_name():
    from greenlm import estimate

    base = {
        "params": 7e9,
        "hardware": "A100",
        "queries_per_day": 1000,
        "days": 30,
        "input_tokens": 500,
        "output_tokens": 200,
    }
    bad = [
        ("params", [1e300, -1, float("nan")]),
        ("queries_per_day", [-1, float("inf"), 1e300]),
        ("days", [0, -1, 1e300]),
        ("input_tokens", [-1, 1e300, "x"]),
        ("batch_size", [0, 1e308]),
        ("hours_per_day", [25, -1]),
        ("pue", [1e308]),
    ]
    problems = []
    for name, values in bad:
        for v in values:
            words = (name, name.replace("_", " "), name.split("_")[0])
            r = _api_ok(lambda name=name, v=v: estimate.inference(**{**base, name: v}), names=words)
            API_RESULTS.append((f"estimate.inference({name}={_short(repr(v))})", r))
            if r:
                problems.append(f"{name}={_short(repr(v))}: {r}")
    assert not problems, "\n".join(problems)


def test_monitor_decorator_refuses_bad_arguments_where_given():
    import greenlm

    problems = []
    for kw in [{"model": "x" * 5000}, {"model": 5}, {"route": ""}, {"route": "a\nb"}, {"tokens": 5}, {"monitor": 5}]:
        (name,) = kw
        r = _api_ok(lambda kw=kw: greenlm.monitor(**kw), names=(name,))
        API_RESULTS.append((f"greenlm.monitor({_short(repr(kw))})", r))
        if r:
            problems.append(f"{kw!r:.60}: {r}")
    r = _api_ok(lambda: greenlm.monitor(5), names=("function",))
    API_RESULTS.append(("greenlm.monitor(5)", r))
    assert not problems and r is None, "\n".join(problems) + f"\nmonitor(5): {r}"


def test_zz_api_counts(request):
    """Print the API half's counts (runs last in this file)."""
    ok = sum(1 for _, v in API_RESULTS if v is None)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and API_RESULTS:
        reporter.write_line(f"bad-input matrix: {len(API_RESULTS)} API inputs tried, {ok} answered right")
