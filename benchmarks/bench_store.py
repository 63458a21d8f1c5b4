"""Reading a long run: the run page and the samples API at 250k samples, before vs after.

"Before" is greenlm as it was at ``--before`` (a git ref, default the commit this work
started from): the run page loads every sample and the samples API returns them all in one
body. "After" is this checkout: the run page draws a bounded power trace grouped in the
database, and the samples API returns one page (default 10,000 samples; the whole run is
read by following ``next_cursor``). Both read the same samples, written by their own
version's store writer into their own database (the old schema is refused by neither).

Each measurement runs in a fresh worker process (``--worker``) that opens the app over the
store, serves one warm-up request per endpoint and then one timed request each, through
Starlette's TestClient (the whole ASGI app: routing, store, template, JSON). Workers of the
two versions alternate, round after round, so drifts of the (shared) machine hit both.

Also measured: what downsampling old samples saves in the store (rows per component per
hour of run time, and SQLite pages in use), on a 1 Hz run once it is a day old.

Run: ``.venv/bin/python benchmarks/bench_store.py`` (about 10 minutes at the defaults;
``--samples``, ``--rounds``, ``--before``). Writes ``benchmarks/results/store.json`` and
prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
BASE_COMMIT = "8ed6106"
RUN_ID = "bench-long-run"
COMPONENTS = ("gpu:0", "cpu")
RATE_HZ = 10.0


# ---------------------------------------------------------------- worker (either version)
def write_run(url: str, n_samples: int, rate_hz: float = RATE_HZ) -> None:
    """One run with ``n_samples`` samples (two components at ``rate_hz``), via the store's writer."""
    import datetime as dt
    import math

    from greenlm.store import open_store
    from greenlm.tracking.sink import Progress, RunStart, SampleRow

    st = open_store(url)
    started = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    st.begin_run(
        RunStart(
            RUN_ID,
            "bench",
            started.isoformat(),
            0,
            "bench-host",
            0.0,
            {"code": "FRA", "intensity_g_per_kwh": 44.0, "source": "bench"},
            1.0,
            meters=[{"name": c, "kind": c.split(":")[0], "provenance": "sampled"} for c in COMPONENTS],
        )
    )
    per = n_samples // len(COMPONENTS)
    e = dict.fromkeys(COMPONENTS, 0.0)
    batch: list[Any] = []
    for i in range(1, per + 1):
        t = i / rate_hz
        for k, c in enumerate(COMPONENTS):
            p = 150.0 + 60.0 * math.sin(t / 30.0 + k)
            e[c] += p / rate_hz
            batch.append(SampleRow(t, c, e[c], p))
        if len(batch) >= 20_000 or i == per:
            total = sum(e.values())
            st.add_samples(RUN_ID, batch, Progress(t, total, total, total / 3.6e6 * 44.0, dict(e)))
            batch = []


def measure(url: str) -> dict[str, Any]:
    """Time one run-page and one samples-API request (after one warm-up of each)."""
    import logging

    from fastapi.testclient import TestClient

    from greenlm.server.app import ServerSettings, create_app

    logging.disable(logging.WARNING)
    c = TestClient(create_app(ServerSettings(store_url=url)))
    out: dict[str, Any] = {}
    for name, path in (("run_page", f"/runs/{RUN_ID}"), ("samples_api", f"/api/v1/runs/{RUN_ID}/samples")):
        assert c.get(path).status_code == 200
        t0 = time.perf_counter()
        r = c.get(path)
        out[name] = {"s": time.perf_counter() - t0, "bytes": len(r.content), "status": r.status_code}
        if name == "samples_api":
            body = r.json()
            out[name]["samples"] = len(body["samples"])
            if "next_cursor" in body:  # after: read the whole run, page by page
                t0 = time.perf_counter()
                n, size, cursor = len(body["samples"]), len(r.content), body["next_cursor"]
                while cursor:
                    page = c.get(f"{path}?cursor={cursor}")
                    size += len(page.content)
                    n += len(page.json()["samples"])
                    cursor = page.json()["next_cursor"]
                out["samples_api_all_pages"] = {
                    "s": time.perf_counter() - t0 + out[name]["s"],
                    "bytes": size,
                    "samples": n,
                }
    return out


def storage(url: str, n_samples: int) -> dict[str, Any]:
    """Rows and SQLite pages of a day-old 1 Hz run, before and after downsampling."""
    import sqlite3

    from greenlm.store import open_store
    from greenlm.store import samples as SM

    write_run(url, n_samples, rate_hz=1.0)
    path = url.removeprefix("sqlite:///")

    def facts() -> dict[str, int]:
        con = sqlite3.connect(path)
        rows = con.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        pages = con.execute("PRAGMA page_count").fetchone()[0] - con.execute("PRAGMA freelist_count").fetchone()[0]
        size = con.execute("PRAGMA page_size").fetchone()[0]
        con.close()
        return {"rows": int(rows), "bytes_in_use": int(pages * size)}

    before = facts()
    st = open_store(url)
    now = time.time() + 2 * SM.DOWNSAMPLE_AFTER_S  # two days later
    t0 = time.perf_counter()
    removed = 0
    while (n := st.compact_samples(now=now)) > 0:
        removed += n
    seconds = time.perf_counter() - t0
    after = facts()
    run_hours = n_samples / len(COMPONENTS) / 3600
    return {
        "before": before,
        "after": after,
        "removed": removed,
        "compaction_s": seconds,
        "rows_per_component_hour": {
            "before": before["rows"] / len(COMPONENTS) / run_hours,
            "after": after["rows"] / len(COMPONENTS) / run_hours,
        },
    }


# ---------------------------------------------------------------- driver
def export_before(ref: str, dest: Path) -> Path:
    """The ``src`` tree of greenlm at ``ref`` (git archive), for the "before" workers."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src"


def worker(src: Path | None, *args: str) -> dict[str, Any]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    with tempfile.TemporaryDirectory(prefix="greenlm-bench-home-") as home:
        env["GREENLM_HOME"] = home
        p = subprocess.run(
            [sys.executable, __file__, "--worker", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
            check=False,
        )
    if p.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{p.stderr}")
    return dict(json.loads(p.stdout.strip().splitlines()[-1]))


def spread(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=250_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--before", default=BASE_COMMIT, help="git ref of the 'before' greenlm")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        what, url, *rest = args.worker
        if what == "write":
            write_run(url, int(rest[0]))
            print(json.dumps({"ok": True}))
        elif what == "measure":
            print(json.dumps(measure(url)))
        else:
            print(json.dumps(storage(url, int(rest[0]))))
        return

    with tempfile.TemporaryDirectory(prefix="greenlm-bench-store-") as d:
        result = run(Path(d), args)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "store.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))


def run(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Write both stores, measure both versions round by round, measure storage."""
    before_src = export_before(args.before, tmp / "before")
    urls = {"before": f"sqlite:///{tmp / 'before.db'}", "after": f"sqlite:///{tmp / 'after.db'}"}
    srcs = {"before": before_src, "after": None}
    for v in ("before", "after"):
        worker(srcs[v], "write", urls[v], str(args.samples))
    times: dict[str, dict[str, list[float]]] = {v: {} for v in urls}
    sizes: dict[str, dict[str, int]] = {v: {} for v in urls}
    for i in range(args.rounds):
        for v in ("before", "after") if i % 2 == 0 else ("after", "before"):
            got = worker(srcs[v], "measure", urls[v])
            for k, m in got.items():
                times[v].setdefault(k, []).append(m["s"])
                sizes[v][k] = m["bytes"]
            print(
                f"round {i + 1}/{args.rounds} {v}: " + ", ".join(f"{k} {m['s']:.3f} s" for k, m in got.items()),
                flush=True,
            )
    store = worker(None, "storage", f"sqlite:///{tmp / 'storage.db'}", str(2 * 24 * 3600))
    result = {
        "cpu": _cpu(),
        "python": platform.python_version(),
        "samples": args.samples,
        "rounds": args.rounds,
        "before_ref": args.before,
        "times_s": {v: {k: spread(x) for k, x in t.items()} for v, t in times.items()},
        "bytes": sizes,
        "storage": store,
        "command": " ".join([Path(sys.executable).name, "benchmarks/bench_store.py", *sys.argv[1:]]),
    }
    return result


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def table(r: dict[str, Any]) -> str:
    def cell(v: str, k: str) -> str:
        t = r["times_s"][v].get(k)
        if t is None:
            return "-"
        return f"{t['median']:.3f} s ({t['min']:.3f}-{t['max']:.3f}), {r['bytes'][v][k] / 1e6:.2f} MB"

    lines = [
        f"{r['samples']:,} samples, {r['rounds']} rounds, CPU {r['cpu']}",
        "",
        "| request | before | after | median ratio |",
        "|---|---|---|---|",
    ]
    for k, label in (("run_page", "run page `/runs/ID`"), ("samples_api", "`GET /samples` (one request)")):
        b, a = r["times_s"]["before"][k]["median"], r["times_s"]["after"][k]["median"]
        lines.append(f"| {label} | {cell('before', k)} | {cell('after', k)} | {b / a:.0f}x |")
    if "samples_api_all_pages" in r["times_s"]["after"]:
        lines.append(f"| `GET /samples`, every page | - | {cell('after', 'samples_api_all_pages')} | |")
    s = r["storage"]
    lines += [
        "",
        f"Downsampling a day-old 1 Hz run ({s['before']['rows']:,} samples): "
        f"{s['before']['rows']:,} -> {s['after']['rows']:,} rows "
        f"({s['rows_per_component_hour']['before']:.0f} -> {s['rows_per_component_hour']['after']:.0f} per component "
        f"per hour), {s['before']['bytes_in_use'] / 1e6:.1f} -> {s['after']['bytes_in_use'] / 1e6:.1f} MB in use, "
        f"in {s['compaction_s']:.2f} s.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
