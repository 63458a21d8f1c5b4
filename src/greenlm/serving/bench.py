"""``greenlm bench serve``: energy per token against throughput and latency, on your own server.

A load generator for a ``greenlm serve`` proxy: at each concurrency level it keeps that many
streaming chat requests in flight until ``requests`` have completed, and measures, per
point, time to first token (first chunk with text) and inter-token latency (time between
chunks with text) from the client's side, and the energy the proxy measured over the point
(``GET /greenlm/stats`` before and after; its band and provenance come from the meters).

Per point: J per output token (the point's measured energy / output tokens), J per request,
output tokens per second (output tokens / wall time of the point), TTFT and ITL p50 / p95,
mean power. The measured energy includes what the engine drew between requests during the
point (idle gaps), which is what serving at that concurrency costs; with a tracker that
reads its meters on demand the window is exact, else it can extend by up to one sampling
interval at each end.

``--json`` prints (and ``--report DIR`` writes as ``bench.json``) exactly this form, which
``greenlm estimate calibrate --bench FILE`` reads::

    {"kind": "greenlm.bench.serve", "version": 1, "model": str, "engine": str,
     "hardware": {"accelerator": str|null, "accelerator_count": int, "cpu": str, "cpu_threads": int},
     "model_info": {"total_params": float|null, "active_params": float|null, "weight_precision": str|null},
     "points": [{"concurrency": int, "requests": int, "prompt_tokens": int, "output_tokens": int,
                 "duration_s": float, "energy_j": float, "energy_low_j": float, "energy_high_j": float,
                 "j_per_output_token": float, "j_per_request": float, "output_tokens_per_s": float,
                 "ttft_p50_s": float, "ttft_p95_s": float, "itl_p50_s": float, "itl_p95_s": float,
                 "power_w": float, "provenance": str}]}

Prompts: ``--prompts FILE`` (one per line, or JSON lines with ``prompt`` or ``messages``), by
default the news documents of gensim's test data (``lee_background.cor``, shipped with
gensim, never downloaded), each cut to its first 60 words.
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greenlm.errors import ConfigError, GreenlmError
from greenlm.progress import Progress

BENCH_KIND = "greenlm.bench.serve"
BENCH_VERSION = 1
PROMPT_WORDS = 60


class BenchError(GreenlmError):
    """The benchmark could not run (no proxy at the URL, every request failed, ...)."""


@dataclass
class BenchOptions:
    """What to sweep and how."""

    url: str
    model: str | None = None
    concurrency: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    requests: int = 16
    prompts_file: str | None = None
    max_tokens: int = 32
    warmup: int = 1
    timeout_s: float = 600.0
    total_params: float | None = None
    active_params: float | None = None
    weight_precision: str | None = None
    prompts: list[list[dict[str, Any]]] | None = None  # chat messages per prompt (overrides the file)


@dataclass
class Sample:
    """One request as the client saw it."""

    ok: bool
    sent: float
    first: float | None = None
    ended: float | None = None
    gaps: list[float] = field(default_factory=list)
    energy_j: float | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None


def parse_concurrency(text: str) -> list[int]:
    """``"1,2,4,8"`` -> ``[1, 2, 4, 8]``; a clear error for anything else."""
    try:
        levels = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError as e:
        raise ConfigError(f"--concurrency takes comma-separated positive integers like 1,2,4,8, got {text!r}.") from e
    if not levels or any(c <= 0 for c in levels):
        raise ConfigError(f"--concurrency takes comma-separated positive integers like 1,2,4,8, got {text!r}.")
    return levels


def percentile(xs: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``xs``, linear between order statistics (NaN if empty)."""
    if not xs:
        return math.nan
    s = sorted(xs)
    k = (len(s) - 1) * q / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def load_prompts(path: str | None) -> list[list[dict[str, Any]]]:
    """Chat messages for each prompt: from ``path``, or gensim's news documents."""
    if path is None:
        from greenlm.optimize.assets import lee_documents

        docs = lee_documents()
        return [
            [{"role": "user", "content": "Continue this news story: " + " ".join(d.split()[:PROMPT_WORDS])}]
            for d in docs
        ]
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ConfigError(f"--prompts {path}: cannot read it ({e.strerror or e}).") from e
    out: list[list[dict[str, Any]]] = []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise ConfigError(f"--prompts {path}:{n}: not valid JSON ({e}).") from e
            if isinstance(obj.get("messages"), list):
                out.append(obj["messages"])
            elif isinstance(obj.get("prompt"), str):
                out.append([{"role": "user", "content": obj["prompt"]}])
            else:
                raise ConfigError(f"--prompts {path}:{n}: a JSON line needs 'prompt' (text) or 'messages' (a list).")
        else:
            out.append([{"role": "user", "content": line}])
    if not out:
        raise ConfigError(f"--prompts {path} has no prompts (one per line, or JSON lines).")
    return out


def model_info_from_path(path: str) -> dict[str, Any]:
    """Parameter count and weight precision of a local safetensors model folder (headers only)."""
    info: dict[str, Any] = {"total_params": None, "active_params": None, "weight_precision": None}
    d = Path(path)
    if not d.is_dir():
        return info
    total = 0
    dtypes: dict[str, int] = {}
    for f in sorted(d.glob("*.safetensors")):
        try:
            with f.open("rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(n))
        except (OSError, ValueError, struct.error):
            return info
        for k, v in header.items():
            if k == "__metadata__" or not isinstance(v, dict):
                continue
            count = math.prod(v.get("shape") or [1])
            total += count
            dtypes[str(v.get("dtype"))] = dtypes.get(str(v.get("dtype")), 0) + count
    if not total:
        return info
    names = {"F32": "fp32", "F16": "fp16", "BF16": "bf16", "I8": "int8", "F8_E4M3": "fp8", "U8": "uint8"}
    main = max(dtypes, key=lambda k: dtypes[k])
    info["total_params"] = float(total)
    info["weight_precision"] = names.get(main, main.lower())
    try:
        cfg = json.loads((d / "config.json").read_text())
        if not any(k in cfg for k in ("num_experts", "num_local_experts", "n_routed_experts")):
            info["active_params"] = float(total)  # a dense model: every weight is used for every token
    except (OSError, ValueError):
        pass
    return info


# ----------------------------------------------------------------------------- the load
def _aiohttp() -> Any:
    try:
        import aiohttp
    except ImportError as e:
        from greenlm.errors import MissingExtraError

        raise MissingExtraError("greenlm bench serve", "serve", "aiohttp") from e
    return aiohttp


async def _stats(session: Any, url: str) -> dict[str, Any]:
    aiohttp = _aiohttp()
    try:
        async with session.get(url + "/greenlm/stats", timeout=aiohttp.ClientTimeout(total=30)) as r:
            text = await r.text()
            status = r.status
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
        raise BenchError(f"No answer from {url} ({e}): start the engine behind `greenlm serve` first.") from e
    try:
        data = json.loads(text) if status == 200 else None
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("kind") != "greenlm.serve.stats":
        raise BenchError(
            f"{url} is not a greenlm serve proxy (GET /greenlm/stats returned {status}): the energy comes from "
            "the proxy; run the engine as `greenlm serve --port P -- ENGINE ...` and point --url at P."
        )
    return data


async def _first_model(session: Any, url: str) -> str:
    """The first model the engine lists (``GET /v1/models`` through the proxy)."""
    aiohttp = _aiohttp()
    try:
        async with session.get(url + "/v1/models", timeout=aiohttp.ClientTimeout(total=30)) as r:
            data = await r.json(content_type=None)
        return str(data["data"][0]["id"])
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError, KeyError, IndexError, TypeError) as e:
        raise BenchError(
            f"Cannot tell which model {url} serves (GET /v1/models: {e}); pass --model (the engine's model id)."
        ) from e


async def _one(session: Any, url: str, model: str, messages: list[dict[str, Any]], opts: BenchOptions) -> Sample:
    aiohttp = _aiohttp()
    body = {"model": model, "messages": messages, "max_tokens": opts.max_tokens, "stream": True}
    s = Sample(ok=False, sent=time.monotonic())
    last: float | None = None
    ext: dict[str, Any] | None = None
    try:
        async with session.post(
            url + "/v1/chat/completions", json=body, timeout=aiohttp.ClientTimeout(total=opts.timeout_s)
        ) as r:
            if r.status != 200:
                s.error = f"HTTP {r.status}: {(await r.text())[:200]}"
                return s
            buf = b""
            async for piece in r.content.iter_any():
                buf += piece.replace(b"\r\n", b"\n")
                while b"\n\n" in buf:
                    event, buf = buf.split(b"\n\n", 1)
                    for line in event.split(b"\n"):
                        if not line.startswith(b"data:"):
                            continue
                        data = line[5:].strip()
                        if data == b"[DONE]":
                            continue
                        try:
                            obj = json.loads(data)
                        except ValueError:
                            continue
                        if isinstance(obj.get("greenlm"), dict):
                            ext = obj["greenlm"]
                        if _has_text(obj):
                            now = time.monotonic()
                            if s.first is None:
                                s.first = now
                            elif last is not None:
                                s.gaps.append(now - last)
                            last = now
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
        s.error = f"{type(e).__name__}: {e}"
        return s
    s.ended = time.monotonic()
    if ext is None or ext.get("energy_j") is None:
        s.error = "the stream carried no greenlm energy (is --url a greenlm serve proxy?)"
        return s
    s.ok = True
    s.energy_j = float(ext["energy_j"])
    s.prompt_tokens = int(ext.get("prompt_tokens") or 0)
    s.output_tokens = int(ext.get("output_tokens") or 0)
    return s


def _has_text(obj: dict[str, Any]) -> bool:
    for c in obj.get("choices") or ():
        if isinstance(c, dict):
            d = c.get("delta")
            if (isinstance(d, dict) and (d.get("content") or d.get("reasoning_content"))) or c.get("text"):
                return True
    return False


async def _point(
    session: Any,
    url: str,
    model: str,
    prompts: list[list[dict[str, Any]]],
    c: int,
    opts: BenchOptions,
    offset: int,
) -> tuple[dict[str, Any], list[Sample]]:
    before = await _stats(session, url)
    queue = list(range(opts.requests))
    samples: list[Sample] = []
    bar = Progress(f"bench serve: concurrency {c}")

    async def worker() -> None:
        while queue:
            i = queue.pop(0)
            s = await _one(session, url, model, prompts[(offset + i) % len(prompts)], opts)
            samples.append(s)
            bar.update("requests", len(samples), opts.requests)

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(c)))
    t1 = time.monotonic()
    after = await _stats(session, url)
    ok = [s for s in samples if s.ok]
    bar.close(f"{len(ok)}/{len(samples)} requests answered")
    if not ok:
        first = next((s.error for s in samples if s.error), "no answer")
        raise BenchError(f"Every request at concurrency {c} failed; the first: {first}")
    energy = after["measured_energy_j"] - before["measured_energy_j"]
    low = after["energy_low_j"] - before["energy_low_j"]
    high = after["energy_high_j"] - before["energy_high_j"]
    window = max(after["t_s"] - before["t_s"], 1e-9)
    out_tokens = sum(s.output_tokens for s in ok)
    duration = t1 - t0
    ttft = [s.first - s.sent for s in ok if s.first is not None]
    gaps = [g for s in ok for g in s.gaps]
    point = {
        "concurrency": c,
        "requests": len(ok),
        "prompt_tokens": sum(s.prompt_tokens for s in ok),
        "output_tokens": out_tokens,
        "duration_s": duration,
        "energy_j": energy,
        "energy_low_j": min(low, energy),
        "energy_high_j": max(high, energy),
        "j_per_output_token": energy / out_tokens if out_tokens else math.nan,
        "j_per_request": energy / len(ok),
        "output_tokens_per_s": out_tokens / duration if duration > 0 else math.nan,
        "ttft_p50_s": percentile(ttft, 50),
        "ttft_p95_s": percentile(ttft, 95),
        "itl_p50_s": percentile(gaps, 50),
        "itl_p95_s": percentile(gaps, 95),
        "power_w": energy / window,
        "provenance": str(after.get("provenance") or "unknown"),
    }
    return point, samples


async def _bench(opts: BenchOptions) -> tuple[dict[str, Any], dict[str, Any]]:
    aiohttp = _aiohttp()
    url = opts.url.rstrip("/")
    prompts = opts.prompts or load_prompts(opts.prompts_file)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        await _stats(session, url)
        model = opts.model or await _first_model(session, url)
        for i in range(opts.warmup):
            s = await _one(session, url, model, prompts[i % len(prompts)], opts)
            if not s.ok:
                raise BenchError(f"The warm-up request failed: {s.error}")
        points = []
        failures: dict[int, list[str]] = {}
        offset = opts.warmup
        for c in opts.concurrency:
            point, samples = await _point(session, url, model, prompts, c, opts, offset)
            offset += opts.requests
            points.append(point)
            bad = [s.error or "failed" for s in samples if not s.ok]
            if bad:
                failures[c] = bad
                print(f"warning: {len(bad)} requests failed at concurrency {c}; first: {bad[0]}", file=sys.stderr)
        last = await _stats(session, url)
    info: dict[str, Any] = {
        "total_params": opts.total_params,
        "active_params": opts.active_params,
        "weight_precision": None,
    }
    found = model_info_from_path(model)
    for k in info:
        if info[k] is None:
            info[k] = found.get(k)
    if opts.weight_precision:
        info["weight_precision"] = opts.weight_precision
    hw = last.get("hardware") or {}
    result = {
        "kind": BENCH_KIND,
        "version": BENCH_VERSION,
        "model": model,
        "engine": str(last.get("engine") or ""),
        "hardware": {
            "accelerator": hw.get("accelerator"),
            "accelerator_count": int(hw.get("accelerator_count") or 0),
            "cpu": str(hw.get("cpu") or ""),
            "cpu_threads": int(hw.get("cpu_threads") or 1),
        },
        "model_info": {
            "total_params": _float_or_none(info["total_params"]),
            "active_params": _float_or_none(info["active_params"]),
            "weight_precision": info["weight_precision"],
        },
        "points": points,
    }
    extras = {
        "url": url,
        "max_tokens": opts.max_tokens,
        "requests_per_point": opts.requests,
        "failures": failures,
        "engine_metrics": last.get("engine_metrics"),
        "prefill_weight": last.get("prefill_weight"),
        "run_id": last.get("run_id"),
    }
    return result, extras


def _float_or_none(x: Any) -> float | None:
    return None if x is None else float(x)


@dataclass(frozen=True)
class BenchRun:
    """A finished sweep: ``result`` in the exact ``greenlm.bench.serve`` form, ``extras`` beside it."""

    result: dict[str, Any]
    extras: dict[str, Any]


def run_bench(opts: BenchOptions) -> BenchRun:
    """Run the sweep against the proxy at ``opts.url``."""
    if opts.requests <= 0:
        raise ConfigError(f"--requests must be a positive integer, got {opts.requests}.")
    if opts.max_tokens <= 0:
        raise ConfigError(f"--max-tokens must be a positive integer, got {opts.max_tokens}.")
    if opts.warmup < 0:
        raise ConfigError(f"--warmup must be >= 0, got {opts.warmup}.")
    from greenlm.serving.engine import parse_upstream_url

    try:
        parse_upstream_url(opts.url)
    except ConfigError as e:
        raise ConfigError(str(e).replace("--upstream", "--url")) from e
    result, extras = asyncio.run(_bench(opts))
    for p in result["points"]:  # unmeasurable figures (no second token: no ITL) are null, not NaN
        for k, v in p.items():
            if isinstance(v, float) and not math.isfinite(v):
                p[k] = None
    return BenchRun(result, extras)


# ----------------------------------------------------------------------------- output
def table(result: dict[str, Any]) -> str:
    """The points as a terminal table (units by magnitude, fits 80 columns)."""
    from greenlm import humanize as hz

    head = f"{'conc':>4} {'J/token':>9} {'J/req':>9} {'tok/s':>7} {'TTFT p50':>9} {'p95':>8} {'ITL p50':>8} {'p95':>8}"
    lines = [
        f"{result['model']} on {result['engine']} ({result['hardware']['cpu']}"
        f"{', ' + str(result['hardware']['accelerator']) if result['hardware']['accelerator'] else ''})",
        head,
    ]
    for p in result["points"]:
        lines.append(
            f"{p['concurrency']:>4} {hz.energy(p['j_per_output_token']):>9} {hz.energy(p['j_per_request']):>9} "
            f"{hz.sig(p['output_tokens_per_s']):>7} {hz.duration(p['ttft_p50_s']):>9} "
            f"{hz.duration(p['ttft_p95_s']):>8} {hz.duration(p['itl_p50_s']):>8} {hz.duration(p['itl_p95_s']):>8}"
        )
    prov = sorted({p["provenance"] for p in result["points"]})
    bands = ", ".join(
        f"c={p['concurrency']}: {hz.energy(p['energy_low_j'])}-{hz.energy(p['energy_high_j'])}"
        for p in result["points"]
    )
    lines.append(f"energy: {', '.join(prov)}; band per point {bands}")
    lines.append("power: " + ", ".join(f"c={p['concurrency']}: {hz.power(p['power_w'])}" for p in result["points"]))
    return "\n".join(lines) + "\n"


def pareto_front(points: list[dict[str, Any]], x: str, maximize_x: bool) -> list[dict[str, Any]]:
    """Points no other point beats on both J per output token (lower) and ``x``."""
    front = []
    for p in points:
        beaten = False
        for q in points:
            if q is p:
                continue
            better_x = q[x] >= p[x] if maximize_x else q[x] <= p[x]
            strictly = q[x] != p[x] or q["j_per_output_token"] != p["j_per_output_token"]
            if better_x and q["j_per_output_token"] <= p["j_per_output_token"] and strictly:
                beaten = True
                break
        if not beaten:
            front.append(p)
    return front


def plot_pareto(result: dict[str, Any], path: Path) -> Path:
    """J per output token against throughput, ITL p50 and TTFT p95, Pareto points joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [p for p in result["points"] if p["j_per_output_token"] is not None]
    panels = [
        ("output_tokens_per_s", "output tokens / s", True),
        ("itl_p50_s", "inter-token latency p50 (s)", False),
        ("ttft_p95_s", "time to first token p95 (s)", False),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), constrained_layout=True)
    for ax, (key, label, maximize) in zip(axes, panels):
        usable = [p for p in pts if p[key] is not None]
        xs = [p[key] for p in usable]
        ys = [p["j_per_output_token"] for p in usable]
        lo = [p["j_per_output_token"] - p["energy_low_j"] / max(p["output_tokens"], 1) for p in usable]
        hi = [p["energy_high_j"] / max(p["output_tokens"], 1) - p["j_per_output_token"] for p in usable]
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", color="#2f7d4a", ecolor="#9cc5a8", capsize=3)
        for p in usable:
            ax.annotate(
                f"c={p['concurrency']}",
                (p[key], p["j_per_output_token"]),
                textcoords="offset points",
                xytext=(5, 5),
                fontsize=8,
            )
        front = sorted(pareto_front(usable, key, maximize), key=lambda p: p[key])
        if len(front) > 1:
            ax.plot(
                [p[key] for p in front],
                [p["j_per_output_token"] for p in front],
                "--",
                color="#2f7d4a",
                label="Pareto front",
            )
            ax.legend(fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("J per output token")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{Path(result['model']).name} on {result['engine']}: energy per token vs speed (bars: band)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(run: BenchRun, directory: str | Path) -> list[Path]:
    """``bench.json`` (the exact form), ``bench.md`` (the table and extras) and ``pareto.png``."""
    from greenlm._files import write_text_atomic

    d = Path(directory)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--report {directory}: cannot create it ({e.strerror or e}).") from e
    result, ex = run.result, run.extras
    paths = [Path(write_text_atomic(d / "bench.json", json.dumps(result, indent=2) + "\n"))]
    md = ["# greenlm bench serve", "", "```", table(result).rstrip(), "```", ""]
    if ex:
        md += ["```json", json.dumps(ex, indent=2, default=str), "```", ""]
    paths.append(Path(write_text_atomic(d / "bench.md", "\n".join(md))))
    try:
        paths.append(plot_pareto(result, d / "pareto.png"))
    except ImportError:
        print("warning: matplotlib is not installed; no pareto.png (pip install matplotlib)", file=sys.stderr)
    return paths
