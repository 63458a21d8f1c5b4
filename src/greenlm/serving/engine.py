"""The serving engine behind the proxy: where it listens, starting it as a child, waiting for it.

``greenlm serve -- ENGINE COMMAND`` starts the engine as a child process of greenlm with a
parent-death signal (Linux ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` in the child before it
executes the engine, so a greenlm killed with SIGKILL does not leave the engine running),
in a session of its own (a Ctrl-C on the terminal reaches greenlm, which then stops the
engine in order: SIGTERM, then SIGKILL after a grace period).

Where the engine listens (the proxy's upstream) is ``--upstream URL`` or read from the
engine command: ``--port N`` / ``--port=N`` and ``--host H`` / ``--host=H``; without
``--port``, the default port of a known engine (:data:`DEFAULT_PORTS`); a wildcard or
missing host (``0.0.0.0``, ``::``, ``localhost``) is reached at ``127.0.0.1``.

The engine is *up* when ``GET /v1/models`` answers 200 with an OpenAI model list; an engine
that answers something else there is not OpenAI-compatible and is refused with the answer
it gave.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from greenlm.errors import ConfigError, GreenlmError

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1

#: Engines greenlm recognises in a command, and the port each listens on by default.
DEFAULT_PORTS: dict[str, int] = {
    "transformers serve": 8000,
    "vllm serve": 8000,
    "vllm.entrypoints.openai.api_server": 8000,
    "llama_cpp.server": 8000,
    "llama-server": 8080,
    "sglang.launch_server": 30000,
    "text-generation-launcher": 3000,
}


class EngineError(GreenlmError):
    """The engine could not be started, did not answer, or is not an OpenAI-compatible server."""


@dataclass(frozen=True)
class Upstream:
    """Where the engine answers: ``url`` (scheme, host and port, no path)."""

    url: str
    source: str  # how it was found: "--upstream", "engine --port", "default port of <engine>"

    @property
    def port(self) -> int:
        p = urlsplit(self.url).port
        return int(p) if p is not None else (443 if self.url.startswith("https") else 80)


def engine_name(cmd: Sequence[str]) -> str | None:
    """The known engine a command starts (``"transformers serve"``, ``"vllm serve"``, ...), or None."""
    words = [Path(w).name for w in cmd]
    joined = " ".join(words)
    for name in DEFAULT_PORTS:
        if " " in name:
            if name in joined:
                return name
        elif name in words or any(w.startswith(name) for w in words):
            return name
    if "vllm" in words and "serve" in words:
        return "vllm serve"
    return None


def _option(cmd: Sequence[str], *names: str) -> str | None:
    """The value of the last ``--name V`` or ``--name=V`` in ``cmd``."""
    found = None
    for i, w in enumerate(cmd):
        for n in names:
            if w == n and i + 1 < len(cmd):
                found = cmd[i + 1]
            elif w.startswith(n + "="):
                found = w[len(n) + 1 :]
    return found


def parse_upstream_url(url: str) -> str:
    """``url`` checked and normalised (no trailing slash); a clear error when it is not one."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--upstream must be an http(s) URL like http://127.0.0.1:8001, got {url!r}.")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError as e:
        raise ConfigError(f"--upstream {url!r} has an invalid port: {e}.") from e
    if parts.path not in ("", "/"):
        raise ConfigError(
            f"--upstream is the engine's address without a path (http://127.0.0.1:8001, not {url!r}): "
            "greenlm forwards /v1/... paths as they come."
        )
    return f"{parts.scheme}://{parts.netloc}"


def infer_upstream(cmd: Sequence[str], upstream: str | None = None) -> Upstream:
    """The engine's address: ``upstream`` if given, else read from the engine command."""
    if upstream:
        return Upstream(parse_upstream_url(upstream), "--upstream")
    port_s = _option(cmd, "--port", "-p")
    host = _option(cmd, "--host", "--hostname") or "127.0.0.1"
    if host in ("0.0.0.0", "::", "[::]", "localhost", ""):
        host = "127.0.0.1"
    name = engine_name(cmd)
    if port_s is not None:
        try:
            port = int(port_s)
        except ValueError as e:
            raise ConfigError(f"The engine command's --port is not a number: {port_s!r}.") from e
        source = "engine --port"
    elif name is not None:
        port, source = DEFAULT_PORTS[name], f"default port of {name}"
    else:
        raise ConfigError(
            f"Cannot tell where {cmd[0]!r} listens: give the engine a --port (greenlm reads it), "
            "or pass --upstream http://127.0.0.1:PORT."
        )
    if not 0 < port < 65536:
        raise ConfigError(f"The engine command's --port must be 1-65535, got {port}.")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return Upstream(f"http://{host}:{port}", source)


# ----------------------------------------------------------------------------- the child
def _pdeathsig(parent: int) -> Callable[[], None]:
    """``preexec_fn``: SIGTERM this child when greenlm dies (Linux), new session."""

    def set_it() -> None:
        with contextlib.suppress(Exception):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # greenlm died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return set_it


class Engine:
    """The engine process greenlm started (``start``), or one it attached to (``attach``)."""

    def __init__(self, cmd: Sequence[str], proc: subprocess.Popen[bytes] | None, pid: int) -> None:
        self.cmd = list(cmd)
        self.proc = proc
        self.pid = pid
        self.exit_code: int | None = None
        self.cpu_time_s: float | None = None  # the child's and its reaped children's, from wait4

    @classmethod
    def start(cls, cmd: Sequence[str], env: dict[str, str] | None = None) -> Engine:
        """Start ``cmd`` as greenlm's child (parent-death signal, own session)."""
        if not cmd:
            raise ConfigError(
                "No engine command given: greenlm serve [options] -- transformers serve MODEL --port 8001"
            )
        kwargs: dict[str, Any] = {"env": env, "start_new_session": True}
        if sys.platform.startswith("linux"):
            kwargs["preexec_fn"] = _pdeathsig(os.getpid())
        try:
            proc = subprocess.Popen(list(cmd), **kwargs)
        except OSError as e:
            raise EngineError(f"Cannot start the engine {cmd[0]!r}: {e}.") from e
        log.info("started engine pid %s: %s", proc.pid, " ".join(cmd))
        return cls(cmd, proc, proc.pid)

    @classmethod
    def attach(cls, pid: int) -> Engine:
        """An engine already running as process ``pid`` (greenlm will not stop it)."""
        import psutil

        if pid <= 0 or not psutil.pid_exists(pid):
            raise ConfigError(f"--pid {pid}: no such process; give the process id of the running engine.")
        try:
            cmd = psutil.Process(pid).cmdline()
        except psutil.Error:
            cmd = []
        return cls(cmd, None, pid)

    @property
    def owned(self) -> bool:
        return self.proc is not None

    def poll(self) -> int | None:
        """The exit code if the engine has exited, else None (reaps an owned child with wait4)."""
        if self.exit_code is not None:
            return self.exit_code
        if self.proc is None:
            import psutil

            try:
                alive = psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE
            except psutil.Error:
                alive = False
            if not alive:
                self.exit_code = -1
            return self.exit_code
        try:
            pid, status, ru = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:
            self.exit_code = self.proc.poll() if self.proc.returncode is None else self.proc.returncode
            return self.exit_code
        if pid == 0:
            return None
        self.cpu_time_s = ru.ru_utime + ru.ru_stime
        code = os.waitstatus_to_exitcode(status)
        self.proc.returncode = code
        self.exit_code = code
        return code

    def stop(self, grace_s: float = 15.0) -> int | None:
        """Stop an owned engine: SIGTERM to its session, SIGKILL after ``grace_s``; its exit code."""
        if self.proc is None:
            return None
        if self.poll() is not None:
            return self.exit_code
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if self.poll() is not None:
                return self.exit_code
            time.sleep(0.05)
        log.warning("greenlm: the engine did not stop within %.0f s of SIGTERM; killing it", grace_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        while self.poll() is None:
            time.sleep(0.05)
        return self.exit_code

    def describe_exit(self) -> str:
        """How the engine ended, in words (``exited with code 1``, ``killed by SIGKILL``)."""
        code = self.exit_code
        if code is None:
            return "still running"
        if self.proc is None:
            return "the attached engine process is gone"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"killed by {name}"
        return f"exited with code {code}"


# ----------------------------------------------------------------------------- readiness
def probe(url: str, timeout_s: float = 5.0) -> list[str]:
    """``GET url/v1/models`` once: the model ids the engine serves.

    Raises :class:`EngineError` when the engine answers but not as an OpenAI server, and
    ``OSError`` while it does not answer at all.
    """
    req = urllib.request.Request(url + "/v1/models", headers={"accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            ctype = r.headers.get("content-type", "")
            raw = r.read(1 << 20)
    except urllib.error.HTTPError as e:
        body = e.read(200).decode("utf-8", "replace")
        if e.code >= 500:
            raise OSError(f"GET /v1/models answered {e.code}") from e  # still starting, often
        raise EngineError(
            f"The upstream {url} answers, but not as an OpenAI-compatible server: GET /v1/models returned "
            f"{e.code} ({body.strip()[:120]!r}). Point --upstream (or the engine's --port) at the engine's "
            "OpenAI API."
        ) from e
    try:
        data = json.loads(raw)
        ids = [str(m["id"]) for m in data["data"]]
    except (ValueError, KeyError, TypeError) as e:
        raise EngineError(
            f"The upstream {url} answers, but not as an OpenAI-compatible server: GET /v1/models returned "
            f"{ctype or 'no content type'} ({raw[:120]!r}), not a model list."
        ) from e
    return ids


def wait_until_up(
    url: str,
    engine: Engine | None,
    timeout_s: float,
    poll_s: float = 0.25,
    cancelled: Callable[[], bool] = lambda: False,
) -> list[str] | None:
    """Poll :func:`probe` until the engine answers; the model ids it serves.

    Fails with :class:`EngineError` if ``engine`` exits first or ``timeout_s`` passes;
    returns None as soon as ``cancelled()`` is true.
    """
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while True:
        if cancelled():
            return None
        if engine is not None and engine.poll() is not None:
            raise EngineError(
                f"The engine {engine.describe_exit()} before answering on {url} "
                f"(command: {' '.join(engine.cmd)}); see its output above."
            )
        try:
            return probe(url, timeout_s=min(5.0, max(0.5, timeout_s)))
        except OSError as e:
            last = str(getattr(e, "reason", e))
        if time.monotonic() >= deadline:
            raise EngineError(
                f"The upstream {url} did not answer GET /v1/models within {timeout_s:g} s ({last}). "
                "Is the engine listening on that port? Raise --startup-timeout for slow model loads."
            )
        time.sleep(poll_s)
