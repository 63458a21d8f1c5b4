"""What ``greenlm serve`` costs a request, and one ``greenlm bench serve`` sweep of SmolLM2 on this CPU.

Targets (issue 13): the proxy adds <= 1 ms per request and <= 1 % of p50 latency at 8
concurrent streams. Four parts, each side by side and interleaved in one run:

A. **Fast engine, ms figure.** ``tests/serving/fake_engine.py`` (an OpenAI-compatible stand-in
   that streams ``--tokens`` tokens ``--token-delay-ms`` apart, sleeping, so it costs almost no
   CPU) is reached four ways, round-robin, ``--rounds`` rounds of ``--requests`` streaming
   requests 8 at a time: directly; through a *socket copy* (asyncio protocols copying bytes
   between sockets, no HTTP parsing: the floor of any user-space proxy that forwards tokens as
   they come); through a *bare relay* (aiohttp server and client copying the body, nothing
   parsed: the floor of a proxy of greenlm's design); and through the proxy (the tracker's
   ``sample_now()`` reads the meters at each request's end). Per round: the median end-to-end
   latency and TTFT of each way and the CPU time each relaying process spent per request
   (its threads' scheduler counters, nanoseconds); the overhead is the per-round difference to
   direct, reported as the median over rounds with its range.
B. **Real engine, % figure.** ``transformers serve`` of SmolLM2-135M (CPU, 1 thread), direct vs
   the proxy interleaved, fewer rounds; the overhead of A divided by B's direct p50 is the %
   figure (B's own difference is dominated by the engine's queueing noise and is shown with
   its spread).
C. ``greenlm bench serve --concurrency 1,2,4,8`` through the proxy in front of SmolLM2 (the
   command line, as a user runs it); results in ``benchmarks/results/serve_sweep/``.
D. The prefill weight: SmolLM2's forward pass over prompts of 32, 128 and 512 tokens against
   one decode step (KV cache, same thread), repeated and interleaved: decode-token
   equivalents per prompt token, the default of ``greenlm serve --prefill-weight``.

    .venv/bin/python benchmarks/bench_serve_proxy.py [--rounds 7] [--requests 64] [--skip-real]
        [--parts A,B,C,D] [--compare-with OTHER_PROXY_PY]

``--compare-with`` adds the ServingProxy of another copy of ``proxy.py`` to part A, interleaved
(e.g. ``git show main:src/greenlm/serving/proxy.py > /tmp/proxy_main.py``: before and after).

Writes ``benchmarks/results/serve_proxy.json`` and prints Markdown for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
FAKE = ROOT / "tests" / "serving" / "fake_engine.py"
CONCURRENCY = 8
COMPARED = "proxy (--compare-with)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout_s: float = 300.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
            raise RuntimeError(f"{url}: the process exited ({proc.returncode}) before answering:\n{err}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ----------------------------------------------------------------------------- a proxy process
def run_proxy(args: argparse.Namespace) -> None:
    """``bench_serve_proxy.py _proxy``: a ServingProxy on --port in front of --upstream
    (``--proxy-file``: the ServingProxy of another copy of ``proxy.py``, e.g. an earlier commit's)."""
    if args.proxy_file:
        import importlib.util

        spec = importlib.util.spec_from_file_location("greenlm_bench_other_proxy", args.proxy_file)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        ServingProxy = mod.ServingProxy
    else:
        from greenlm.serving.proxy import ServingProxy

    async def main() -> None:
        px = ServingProxy(
            args.upstream,
            model="bench",
            interval_s=args.interval,
            store=False,
            location="DEU",
            engine_metrics_interval_s=0,
        )
        await px.start("127.0.0.1", args.port, pid=args.pid)
        print("ready", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        import signal

        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        r = await px.stop()
        s = r.metadata["serving"]
        print(json.dumps({"requests": s["requests"], "measured_j": s["measured_energy_j"]}), flush=True)

    asyncio.run(main())


async def _until_sigterm() -> None:
    import signal

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


def run_relay(args: argparse.Namespace) -> None:
    """``bench_serve_proxy.py _relay``: the floor, a bare aiohttp relay (bytes through, nothing parsed)."""
    import aiohttp
    from aiohttp import web

    async def main() -> None:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            async with session.request(
                request.method,
                args.upstream + request.rel_url.path_qs,
                data=body,
                headers={"content-type": "application/json"},
            ) as up:
                resp = web.StreamResponse(
                    status=up.status, headers={"content-type": up.headers.get("content-type", "")}
                )
                await resp.prepare(request)
                async for piece in up.content.iter_any():
                    await resp.write(piece)
                await resp.write_eof()
                return resp

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", args.port).start()
        await _until_sigterm()
        await runner.cleanup()
        await session.close()

    asyncio.run(main())


def run_splice(args: argparse.Namespace) -> None:
    """``bench_serve_proxy.py _splice``: the floor of any user-space proxy, bytes copied between sockets.

    asyncio protocols, no HTTP parsing at all: each client connection gets its own upstream
    connection and every read is written on at once (what any proxy must at least do to
    forward tokens as they come).
    """
    host, _, port = args.upstream.removeprefix("http://").partition(":")

    class Pipe(asyncio.Protocol):
        def __init__(self) -> None:
            self.peer: asyncio.Transport | None = None
            self.transport: asyncio.Transport | None = None
            self.pending: list[bytes] = []

        def data_received(self, data: bytes) -> None:
            if self.peer is None:
                self.pending.append(data)
            else:
                self.peer.write(data)

        def connection_lost(self, exc: Exception | None) -> None:
            if self.peer is not None:
                self.peer.close()

    class Client(Pipe):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]
            asyncio.get_running_loop().create_task(self.connect())

        async def connect(self) -> None:
            loop = asyncio.get_running_loop()
            up_t, up = await loop.create_connection(Pipe, host, int(port))
            up.peer = self.transport
            self.peer = up_t
            for d in self.pending:
                up_t.write(d)
            self.pending.clear()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Client, "127.0.0.1", args.port)
        await _until_sigterm()
        server.close()

    asyncio.run(main())


class Proc:
    def __init__(self, cmd: list[str], ready_url: str, env: dict[str, str] | None = None) -> None:
        self.p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_http(ready_url, proc=self.p)
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        self.p.terminate()
        try:
            self.p.wait(60)
        except subprocess.TimeoutExpired:
            self.p.kill()


def start_relay(upstream: str, kind: str = "_relay") -> tuple[Proc, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    return Proc([sys.executable, __file__, kind, "--upstream", upstream, "--port", str(port)], url + "/health"), url


def start_proxy(upstream: str, pid: int, interval: float, proxy_file: str | None = None) -> tuple[Proc, str]:
    port = free_port()
    cmd = [sys.executable, __file__, "_proxy", "--upstream", upstream, "--pid", str(pid), "--port", str(port)]
    cmd += ["--interval", str(interval)] + (["--proxy-file", proxy_file] if proxy_file else [])
    url = f"http://127.0.0.1:{port}"
    return Proc(cmd, url + "/greenlm/stats"), url


# ----------------------------------------------------------------------------- the load
async def one(session: Any, url: str, model: str, tokens: int) -> tuple[float, float]:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Once upon a time"}],
        "max_tokens": tokens,
        "stream": True,
    }
    t0 = time.perf_counter()
    first = None
    async with session.post(url + "/v1/chat/completions", json=body) as r:
        assert r.status == 200, await r.text()
        async for piece in r.content.iter_any():
            if first is None and b'"content"' in piece:
                first = time.perf_counter()
    end = time.perf_counter()
    return end - t0, (first or end) - t0


async def batch(url: str, model: str, n: int, tokens: int) -> tuple[list[float], list[float]]:
    import aiohttp

    lat: list[float] = []
    ttft: list[float] = []
    todo = list(range(n))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:

        async def worker() -> None:
            while todo:
                todo.pop()
                a, b = await one(s, url, model, tokens)
                lat.append(a)
                ttft.append(b)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return lat, ttft


def cpu_s(pid: int | None) -> float:
    """CPU seconds of a process, all its threads: the scheduler's nanosecond counters
    (``/proc/PID/task/*/schedstat``) where the kernel has them, else psutil's clock ticks."""
    if pid is None:
        return 0.0
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        import psutil

        t = psutil.Process(pid).cpu_times()
        return t.user + t.system


def interleaved(
    targets: dict[str, str], model: str, rounds: int, n: int, tokens: int, pids: dict[str, int | None]
) -> dict[str, Any]:
    per_round: dict[str, list[dict[str, float]]] = {k: [] for k in targets}
    names = list(targets)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]  # rotate who goes first
        for name in order:
            c0 = cpu_s(pids.get(name))
            lat, ttft = asyncio.run(batch(targets[name], model, n, tokens))
            cpu = (cpu_s(pids.get(name)) - c0) / n
            per_round[name].append(
                {"p50_s": statistics.median(lat), "ttft_p50_s": statistics.median(ttft), "proxy_cpu_s": cpu}
            )
        print(
            f"  round {r + 1}/{rounds}: " + ", ".join(f"{k} {per_round[k][-1]['p50_s'] * 1e3:.1f} ms" for k in names),
            file=sys.stderr,
        )
    out: dict[str, Any] = {"rounds": per_round}
    base = per_round["direct"]
    for name in names:
        if name == "direct":
            continue
        d = [a["p50_s"] - b["p50_s"] for a, b in zip(per_round[name], base)]
        dt = [a["ttft_p50_s"] - b["ttft_p50_s"] for a, b in zip(per_round[name], base)]
        cpu = [x["proxy_cpu_s"] for x in per_round[name]]
        out[name] = {
            "proxy_cpu_ms_per_request": statistics.median(cpu) * 1e3,
            "proxy_cpu_ms_per_request_range": [min(cpu) * 1e3, max(cpu) * 1e3],
            "added_p50_ms": statistics.median(d) * 1e3,
            "added_p50_ms_range": [min(d) * 1e3, max(d) * 1e3],
            "added_ttft_ms": statistics.median(dt) * 1e3,
            "added_ttft_ms_range": [min(dt) * 1e3, max(dt) * 1e3],
        }
    out["direct_p50_s"] = statistics.median(x["p50_s"] for x in base)
    out["direct_p50_s_range"] = [min(x["p50_s"] for x in base), max(x["p50_s"] for x in base)]
    return out


def part_a(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    eng = Proc(
        [sys.executable, str(FAKE), "--port", str(port), "--token-delay-ms", str(args.token_delay_ms)],
        f"http://127.0.0.1:{port}/health",
    )
    up = f"http://127.0.0.1:{port}"
    procs = [eng]
    try:
        px, url_px = start_proxy(up, eng.p.pid, args.interval)
        relay, url_relay = start_relay(up)
        splice, url_splice = start_relay(up, "_splice")
        procs += [px, relay, splice]
        targets = {"direct": up, "socket copy": url_splice, "bare relay": url_relay, "proxy": url_px}
        pids = {"proxy": px.p.pid, "bare relay": relay.p.pid, "socket copy": splice.p.pid}
        if args.compare_with:  # the same proxy from another copy of proxy.py, side by side
            other, url_other = start_proxy(up, eng.p.pid, args.interval, args.compare_with)
            procs.append(other)
            targets[COMPARED] = url_other
            pids[COMPARED] = other.p.pid
        print(f"A: fake engine, {args.tokens} tokens {args.token_delay_ms} ms apart, 8 streams", file=sys.stderr)
        return interleaved(targets, "fake-model", args.rounds, args.requests, args.tokens, pids)
    finally:
        for p in reversed(procs):
            p.stop()


def smollm2_dir() -> Path:
    from greenlm.optimize import assets

    assets.load_smollm2()
    return assets.smollm2_cache_dir()


def part_b(args: argparse.Namespace, model_dir: Path) -> dict[str, Any]:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(model_dir), "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--device", "cpu"]
    eng = Proc(cmd, f"http://127.0.0.1:{port}/v1/models", env)
    up = f"http://127.0.0.1:{port}"
    procs = [eng]
    try:
        asyncio.run(batch(up, str(model_dir), 2, 4))  # warm up
        px, url_px = start_proxy(up, eng.p.pid, args.interval)
        procs += [px]
        targets = {"direct": up, "proxy": url_px}
        pids = {"proxy": px.p.pid}
        print("B: transformers serve, SmolLM2-135M, 8 streams", file=sys.stderr)
        return interleaved(targets, str(model_dir), args.real_rounds, args.real_requests, args.real_tokens, pids)
    finally:
        for p in reversed(procs):
            p.stop()


def part_c(args: argparse.Namespace, model_dir: Path) -> dict[str, Any]:
    port, eport = free_port(), free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    import tempfile

    store = f"sqlite:///{tempfile.mkdtemp()}/runs.db"
    serve = [sys.executable, "-m", "greenlm", "serve", "--port", str(port), "--location", "DEU", "--store", store]
    serve += ["--", sys.executable, "-m", "transformers.cli.transformers", "serve", str(model_dir)]
    serve += ["--host", "127.0.0.1", "--port", str(eport), "--device", "cpu"]
    if args.continuous_batching:
        serve.append("--continuous-batching")
    px = Proc(serve, f"http://127.0.0.1:{port}/greenlm/stats", env)
    out = RESULTS / ("serve_sweep_cb" if args.continuous_batching else "serve_sweep")
    cmd = [sys.executable, "-m", "greenlm", "bench", "serve", "--url", f"http://127.0.0.1:{port}"]
    cmd += ["--concurrency", "1,2,4,8", "--requests", str(args.sweep_requests), "--max-tokens", "32"]
    cmd += ["--warmup", "2"]
    cmd += ["--json", "--report", str(out)]
    print("C: " + " ".join(["greenlm", *cmd[3:]]), file=sys.stderr)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    finally:
        px.stop()
    if p.returncode != 0:
        raise RuntimeError(p.stderr)
    engine = "transformers serve SMOLLM2_DIR --device cpu" + (
        " --continuous-batching" if args.continuous_batching else ""
    )
    return {
        "serve": f"OMP_NUM_THREADS=1 greenlm serve --port P --location DEU -- {engine} --port Q",
        "command": "greenlm " + " ".join(cmd[3:]).replace(str(out), "benchmarks/results/" + out.name),
        "result": json.loads(p.stdout),
    }


def part_d(model_dir: Path, reps: int) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    m = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    sizes = (32, 128, 512)
    ratios: dict[int, list[float]] = {p: [] for p in sizes}
    with torch.no_grad():
        for _ in range(reps):
            for p in sizes:  # interleaved: one of each size per repetition
                ids = torch.randint(100, 40000, (1, p))
                t = time.perf_counter()
                out = m(ids, use_cache=True)
                pre = (time.perf_counter() - t) / p
                cache, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
                steps = []
                for _ in range(8):
                    t = time.perf_counter()
                    o = m(nxt, past_key_values=cache, use_cache=True)
                    steps.append(time.perf_counter() - t)
                    cache, nxt = o.past_key_values, o.logits[:, -1:].argmax(-1)
                ratios[p].append(pre / statistics.median(steps))
    allr = [x for v in ratios.values() for x in v]
    return {
        "per_prompt_size": {
            str(p): {"median": statistics.median(v), "min": min(v), "max": max(v)} for p, v in ratios.items()
        },
        "median": statistics.median(allr),
    }


def markdown(res: dict[str, Any]) -> str:
    lines = [f"CPU: {res['cpu']} ({res['cpu_threads']} threads, shared with other jobs)", ""]
    if res.get("loadavg"):
        lines += [f"Load average (1 min) before / after: {res['loadavg'][0]:.2f} / {res['loadavg'][1]:.2f}", ""]
    a = res.get("A")
    if a:
        lines += [
            f"A. fake engine ({res['args']['tokens']} tokens, {res['args']['token_delay_ms']} ms apart), 8 streams, "
            f"{len(a['rounds']['direct'])} rounds x {res['args']['requests']} requests; direct p50 "
            f"{a['direct_p50_s'] * 1e3:.1f} ms",
            "",
            "| through | proxy CPU per request | added p50 latency (median, range over rounds) | added TTFT p50 |",
            "|---|---|---|---|",
        ]
        for k in ("socket copy", "bare relay", COMPARED, "proxy"):
            if k not in a:
                continue
            x = a[k]
            lines.append(
                f"| {k} | {x['proxy_cpu_ms_per_request']:.2f} ms ({x['proxy_cpu_ms_per_request_range'][0]:.2f} to "
                f"{x['proxy_cpu_ms_per_request_range'][1]:.2f}) | {x['added_p50_ms']:.2f} ms "
                f"({x['added_p50_ms_range'][0]:.2f} to {x['added_p50_ms_range'][1]:.2f}) | {x['added_ttft_ms']:.2f} ms "
                f"({x['added_ttft_ms_range'][0]:.2f} to {x['added_ttft_ms_range'][1]:.2f}) |"
            )
        lines.append("")
    b = res.get("B")
    if b:
        lines += [
            f"B. transformers serve, SmolLM2-135M, {res['args']['real_tokens']} tokens, 8 streams, "
            f"{len(b['rounds']['direct'])} rounds x {res['args']['real_requests']} requests; direct p50 "
            f"{b['direct_p50_s'] * 1e3:.0f} ms (range {b['direct_p50_s_range'][0] * 1e3:.0f}-"
            f"{b['direct_p50_s_range'][1] * 1e3:.0f} ms)",
            "",
            "| through | added p50 (median, range) | A's added ms as % of B's direct p50 |",
            "|---|---|---|",
        ]
        for k in ("proxy",):
            if k not in b:
                continue
            x = b[k]
            pct = a[k]["added_p50_ms"] / (b["direct_p50_s"] * 1e3) * 100 if a and k in a else float("nan")
            lines.append(
                f"| {k} | {x['added_p50_ms']:.1f} ms ({x['added_p50_ms_range'][0]:.1f} to "
                f"{x['added_p50_ms_range'][1]:.1f}) | {pct:.3f} % |"
            )
        lines.append("")
    d = res.get("D")
    if d:
        lines += ["D. prefill weight (decode-token equivalents per prompt token), SmolLM2-135M, 1 thread:", ""]
        for p, v in d["per_prompt_size"].items():
            lines.append(f"- {p}-token prompt: median {v['median']:.3f} (range {v['min']:.3f}-{v['max']:.3f})")
        lines.append(f"- all: median {d['median']:.3f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd")
    pp = sub.add_parser("_proxy")
    pp.add_argument("--upstream", required=True)
    pp.add_argument("--pid", type=int, required=True)
    pp.add_argument("--port", type=int, required=True)
    pp.add_argument("--interval", type=float, default=0.1)
    pp.add_argument("--proxy-file")
    rp = sub.add_parser("_relay")
    rp.add_argument("--upstream", required=True)
    rp.add_argument("--port", type=int, required=True)
    sp = sub.add_parser("_splice")
    sp.add_argument("--upstream", required=True)
    sp.add_argument("--port", type=int, required=True)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--token-delay-ms", type=float, default=2.0)
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument(
        "--compare-with",
        metavar="PROXY_PY",
        help="part A: also run the ServingProxy of this copy of proxy.py (e.g. `git show main:...`), interleaved",
    )
    ap.add_argument("--real-rounds", type=int, default=3)
    ap.add_argument("--real-requests", type=int, default=16)
    ap.add_argument("--real-tokens", type=int, default=16)
    ap.add_argument("--sweep-requests", type=int, default=8)
    ap.add_argument("--continuous-batching", action="store_true", help="part C: the engine batches (its flag)")
    ap.add_argument("--prefill-reps", type=int, default=5)
    ap.add_argument("--skip-real", action="store_true", help="part A only")
    ap.add_argument("--parts", default="A,B,C,D", help="which parts to run (default A,B,C,D)")
    args = ap.parse_args()
    if args.cmd == "_proxy":
        run_proxy(args)
        return
    if args.cmd == "_relay":
        run_relay(args)
        return
    if args.cmd == "_splice":
        run_splice(args)
        return
    res: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_threads": os.cpu_count(),
        "args": {k: v for k, v in vars(args).items() if k != "cmd"},
    }
    parts = {"A"} if args.skip_real else set(args.parts.split(","))
    load0 = os.getloadavg()[0]
    if "A" in parts:
        res["A"] = part_a(args)
    if parts & {"B", "C", "D"}:
        model_dir = smollm2_dir()
        if "B" in parts:
            res["B"] = part_b(args, model_dir)
        if "D" in parts:
            res["D"] = part_d(model_dir, args.prefill_reps)
        if "C" in parts:
            res["C_cb" if args.continuous_batching else "C"] = part_c(args, model_dir)
    res["loadavg"] = [load0, os.getloadavg()[0]]
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "serve_proxy.json"
    if out.exists() and parts != {"A", "B", "C", "D"}:  # a partial run keeps the other parts' last figures
        old = json.loads(out.read_text())
        res = {**old, **res, "args": {**old.get("args", {}), **res["args"]}}
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(markdown(res))


if __name__ == "__main__":
    main()
