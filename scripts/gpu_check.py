#!/usr/bin/env python3
"""Device check of greenlm's GPU meters, for a machine with an NVIDIA GPU (issue 14).

Kept in the repository so that any session lent a GPU can rerun it and put the figures in
BENCHMARKS.md. It takes about two to three minutes and does, on one GPU:

1. ``greenlm detect --json``: what greenlm finds and why not the rest;
2. ``--repeats`` short training loops (an MLP in float32/TF32 with AdamW, ``--seconds``
   each), every one measured four ways at once, side by side:

   * an ``EnergyTracker`` with the detected meters (the NVML energy counter),
   * an ``EnergyTracker`` with NVML power sampling forced (``NvmlPowerMeter``),
   * the NVML counter read directly before and after (no greenlm code in between),
   * ``nvidia-smi --query-gpu=power.draw -lms 100``, integrated here (trapezoid);

3. two processes sharing the GPU, one busy about 75 % of the time and one about 25 %, each
   under its own ``EnergyTracker`` (``attribution="process"``), while this process measures
   the whole GPU (``attribution="machine"``): the shares, their sum against the device, and
   the share expected from each process's own CUDA-event busy time.

Everything goes to the JSON file given by ``--out``, with medians and ranges over the
repeats and a list of checks (tolerances stated in each). Exit codes: 0 every check passed;
1 a check failed (see ``checks`` in the JSON); 2 no usable GPU here (the JSON and stderr
say why: no torch with CUDA, no nvidia-ml-py, no driver, no GPU).

Usage (from the repository root; needs torch with CUDA and nvidia-ml-py)::

    python scripts/gpu_check.py --out gpu_check.json [--seconds 20] [--repeats 3] [--gpu 0]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


class NoGpu(RuntimeError):
    """The machine cannot run the check (the message says why)."""


def _fail_no_gpu(out: Path, reason: str) -> None:
    out.write_text(json.dumps({"ok": False, "error": f"no usable GPU: {reason}"}, indent=2) + "\n")
    print(f"gpu_check: cannot run here: {reason}", file=sys.stderr)
    sys.exit(2)


def _preflight(gpu: int) -> dict[str, Any]:
    """Facts about the GPU, or NoGpu saying what is missing."""
    try:
        import pynvml
    except ImportError as e:
        raise NoGpu("nvidia-ml-py is not installed (pip install 'greenlm[nvidia]')") from e
    try:
        pynvml.nvmlInit()
    except Exception as e:
        raise NoGpu(f"nvmlInit failed ({e}): no NVIDIA driver") from e
    n = pynvml.nvmlDeviceGetCount()
    if n <= gpu:
        raise NoGpu(f"NVML sees {n} GPU(s); --gpu {gpu} does not exist")
    try:
        import torch
    except ImportError as e:
        raise NoGpu("torch is not installed") from e
    if not torch.cuda.is_available():
        raise NoGpu(f"torch {torch.__version__} sees no CUDA device (a CPU build, or CUDA_VISIBLE_DEVICES hides it)")
    h = pynvml.nvmlDeviceGetHandleByIndex(gpu)
    facts: dict[str, Any] = {
        "name": _s(pynvml.nvmlDeviceGetName(h)),
        "uuid": _s(pynvml.nvmlDeviceGetUUID(h)),
        "driver": _s(pynvml.nvmlSystemGetDriverVersion()),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "nvml_index": gpu,
    }
    for key, fn in (
        ("enforced_power_limit_w", lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1e3),
        ("max_power_limit_w", lambda: pynvml.nvmlDeviceGetPowerManagementLimitConstraints(h)[1] / 1e3),
        ("mig_mode", lambda: pynvml.nvmlDeviceGetMigMode(h)[0]),
        ("energy_counter_mj", lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(h)),
    ):
        try:
            facts[key] = fn()
        except Exception as e:
            facts[key] = f"unavailable: {e}"
    try:
        pynvml.nvmlDeviceGetProcessUtilization(h, 0)
        facts["process_utilization"] = "supported"
    except Exception as e:
        facts["process_utilization"] = f"{e}"  # NotFound (no sample yet) means supported
    return facts


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


# --------------------------------------------------------------------------- references
class NvmlPowerIntegral:
    """NVML power read at 10 Hz on a thread of its own and integrated (trapezoid)."""

    def __init__(self, handle: Any, interval_s: float = 0.1) -> None:
        import pynvml

        self._nvml, self._h, self._dt = pynvml, handle, interval_s
        self.energy_j = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t0, p0 = time.monotonic(), self._nvml.nvmlDeviceGetPowerUsage(self._h) / 1e3
        while not self._stop.wait(self._dt):
            t1, p1 = time.monotonic(), self._nvml.nvmlDeviceGetPowerUsage(self._h) / 1e3
            self.energy_j += 0.5 * (p0 + p1) * (t1 - t0)
            self.samples += 1
            t0, p0 = t1, p1

    def __enter__(self) -> NvmlPowerIntegral:
        self._t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join()


class NvidiaSmiIntegral:
    """``nvidia-smi --query-gpu=power.draw -lms 100``, integrated between enter and exit."""

    def __init__(self, gpu: int) -> None:
        self.gpu = gpu
        self.points: list[tuple[float, float]] = []
        self.error: str | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._t0 = self._t1 = 0.0

    def __enter__(self) -> NvidiaSmiIntegral:
        exe = shutil.which("nvidia-smi")
        if exe is None:
            self.error = "nvidia-smi not on PATH"
            return self
        cmd = [exe, f"--id={self.gpu}", "--query-gpu=power.draw", "--format=csv,noheader,nounits", "-lms", "100"]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        time.sleep(0.5)  # let it print its first lines before the window opens
        self._t0 = time.monotonic()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                self.points.append((time.monotonic(), float(line.strip())))
            except ValueError:
                self.error = f"unexpected nvidia-smi line: {line.strip()!r}"

    def __exit__(self, *exc: Any) -> None:
        self._t1 = time.monotonic()
        if self._proc is not None:
            time.sleep(0.3)
            self._proc.terminate()
            self._proc.wait(timeout=10)

    @property
    def energy_j(self) -> float | None:
        pts = [p for p in self.points if self._t0 - 0.2 <= p[0] <= self._t1 + 0.2]
        if len(pts) < 2:
            return None
        e = 0.0
        for (ta, pa), (tb, pb) in itertools.pairwise(pts):
            lo, hi = max(ta, self._t0), min(tb, self._t1)
            if hi > lo:
                e += 0.5 * (pa + pb) * (hi - lo)
        return e


# --------------------------------------------------------------------------- workloads
def _model(torch: Any, width: int = 4096) -> tuple[Any, Any]:
    torch.backends.cuda.matmul.allow_tf32 = True
    model = torch.nn.Sequential(
        torch.nn.Linear(width, width), torch.nn.GELU(), torch.nn.Linear(width, width), torch.nn.GELU()
    ).cuda()
    return model, torch.optim.AdamW(model.parameters(), lr=1e-4)


def _train_step(torch: Any, model: Any, opt: Any, x: Any) -> None:
    opt.zero_grad(set_to_none=True)
    loss = model(x).float().pow(2).mean()
    loss.backward()
    opt.step()


def training_run(gpu: int, seconds: float) -> dict[str, Any]:
    """One training loop measured four ways at once."""
    import pynvml
    import torch

    from greenlm import EnergyTracker
    from greenlm.meters.nvml import NvmlPowerMeter

    h = pynvml.nvmlDeviceGetHandleByIndex(gpu)
    model, opt = _model(torch)
    x = torch.randn(4096, 4096, device="cuda")
    for _ in range(3):  # warm-up outside the window
        _train_step(torch, model, opt, x)
    torch.cuda.synchronize()
    counter = EnergyTracker(store=False, interval_s=0.1, location="FRA", attribution="machine")
    sampled = EnergyTracker(store=False, interval_s=0.1, location="FRA", meters=[NvmlPowerMeter(pynvml, gpu, h, 0)])
    steps = 0
    with NvidiaSmiIntegral(gpu) as smi, NvmlPowerIntegral(h) as power:
        mj0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
        t0 = time.monotonic()
        with counter, sampled:
            while time.monotonic() - t0 < seconds:
                _train_step(torch, model, opt, x)
                counter.step()
                steps += 1
            torch.cuda.synchronize()
        t1 = time.monotonic()
        mj1 = pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
    gc = counter.result.component("gpu:0")
    gs = sampled.result.component("gpu:0")
    direct = (mj1 - mj0) / 1e3
    out = {
        "duration_s": t1 - t0,
        "steps": steps,
        "nvml_counter_direct_j": direct,
        "tracker_counter_j": gc.energy_j,
        "tracker_counter_provenance": gc.provenance,
        "tracker_sampled_j": gs.energy_j,
        "nvml_power_10hz_integral_j": power.energy_j,
        "nvidia_smi_integral_j": smi.energy_j,
        "nvidia_smi_points": len(smi.points),
        "nvidia_smi_error": smi.error,
        "mean_power_w": direct / (t1 - t0),
        "warnings": list(counter.result.warnings) + list(sampled.result.warnings),
    }
    for key in ("tracker_counter_j", "tracker_sampled_j", "nvml_power_10hz_integral_j", "nvidia_smi_integral_j"):
        v = out[key]
        out[key.replace("_j", "_over_counter")] = None if v is None or direct <= 0 else v / direct
    return out


def worker(duty: float, seconds: float, result: Path) -> None:
    """A process that keeps the GPU busy about ``duty`` of the time, under its own tracker."""
    import torch

    from greenlm import EnergyTracker

    model, opt = _model(torch, width=2048)
    x = torch.randn(2048, 2048, device="cuda")
    _train_step(torch, model, opt, x)
    torch.cuda.synchronize()
    period = 0.2
    busy_s = 0.0
    t = EnergyTracker(store=False, interval_s=0.1, location="FRA", attribution="process")
    with t:
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            start = torch.cuda.Event(enable_timing=True)
            stop = torch.cuda.Event(enable_timing=True)
            t_burst = time.monotonic()
            start.record()
            while time.monotonic() - t_burst < duty * period:
                _train_step(torch, model, opt, x)
                torch.cuda.synchronize()
            stop.record()
            torch.cuda.synchronize()
            busy_s += start.elapsed_time(stop) / 1e3
            time.sleep(max(0.0, (1 - duty) * period))
    result.write_text(json.dumps({"pid": os.getpid(), "busy_s": busy_s, "result": t.result.to_dict()}))


def sharing_run(gpu: int, seconds: float, tmp: Path) -> dict[str, Any]:
    """Two processes, about 75 % and 25 % busy, each tracked; this process tracks the whole GPU."""
    from greenlm import EnergyTracker

    whole = EnergyTracker(store=False, interval_s=0.1, location="FRA", attribution="machine")
    files = [tmp / "worker_heavy.json", tmp / "worker_light.json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with whole:
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--worker", str(duty), "--seconds", str(seconds), "--result", str(f)],
                env=env,
            )
            for duty, f in zip((0.75, 0.25), files)
        ]
        codes = [p.wait(timeout=seconds + 120) for p in procs]
    if any(codes):
        return {"error": f"worker exit codes {codes}"}
    ws = [json.loads(f.read_text()) for f in files]
    comps = [next(c for c in w["result"]["components"] if c["kind"] == "gpu") for w in ws]
    device_j = whole.result.component("gpu:0").energy_j
    busy = [w["busy_s"] for w in ws]
    out: dict[str, Any] = {"device_energy_j_machine_tracker": device_j, "workers": []}
    for label, w, c, b in zip(("heavy (75 %)", "light (25 %)"), ws, comps, busy):
        out["workers"].append(
            {
                "worker": label,
                "pid": w["pid"],
                "energy_j": c["energy_j"],
                "device_energy_j": c.get("device_energy_j"),
                "scope": c["scope"],
                "provenance": c["provenance"],
                "low_j": c["low_j"],
                "high_j": c["high_j"],
                "share": c["energy_j"] / c["device_energy_j"] if c.get("device_energy_j") else None,
                "share_by_cuda_busy_time": b / sum(busy) if sum(busy) > 0 else None,
                "busy_s": b,
                "warnings": [x for x in w["result"]["warnings"] if x.startswith("gpu:")],
            }
        )
    out["sum_of_shares_j"] = sum(c["energy_j"] for c in comps)
    out["sum_over_device"] = out["sum_of_shares_j"] / device_j if device_j > 0 else None
    return out


# --------------------------------------------------------------------------- main
def _spread(values: list[float]) -> dict[str, float] | None:
    vs = [v for v in values if v is not None]
    if not vs:
        return None
    return {"median": statistics.median(vs), "min": min(vs), "max": max(vs), "n": len(vs)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    p.add_argument("--seconds", type=float, default=20.0, help="length of each training run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--share-seconds", type=float, default=30.0)
    p.add_argument("--gpu", type=int, default=0, help="NVML index of the GPU to use")
    p.add_argument("--worker", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker is not None:
        worker(a.worker, a.seconds, a.result)
        return 0
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    os.environ["CUDA_VISIBLE_DEVICES"] = str(a.gpu)  # before torch initialises CUDA
    try:
        facts = _preflight(a.gpu)
    except NoGpu as e:
        _fail_no_gpu(a.out, str(e))
    report: dict[str, Any] = {"ok": False, "gpu": facts, "command": " ".join(sys.argv)}
    det = subprocess.run(
        [sys.executable, "-m", "greenlm", "detect", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        timeout=120,
    )
    report["detect"] = json.loads(det.stdout) if det.returncode == 0 else {"error": det.stderr[-2000:]}
    runs = [training_run(a.gpu, a.seconds) for _ in range(a.repeats)]
    report["training"] = runs
    report["training_summary"] = {
        k: _spread([r[k] for r in runs])
        for k in (
            "mean_power_w",
            "tracker_counter_over_counter",
            "tracker_sampled_over_counter",
            "nvml_power_10hz_integral_over_counter",
            "nvidia_smi_integral_over_counter",
        )
    }
    tmp = a.out.resolve().parent / "gpu_check_workers"
    tmp.mkdir(exist_ok=True)
    report["sharing"] = sharing_run(a.gpu, a.share_seconds, tmp)
    s = report["training_summary"]
    share = report["sharing"]
    checks = [
        ("tracker counter = direct NVML counter within 2 %", s["tracker_counter_over_counter"], 0.02),
        ("tracker sampled power = counter within 10 %", s["tracker_sampled_over_counter"], 0.10),
        ("nvidia-smi power.draw integral = counter within 15 %", s["nvidia_smi_integral_over_counter"], 0.15),
    ]
    report["checks"] = [
        {
            "check": what,
            "median": None if v is None else v["median"],
            "passed": v is not None and abs(v["median"] - 1) <= tol,
        }
        for what, v, tol in checks
    ]
    if "sum_over_device" in share:
        report["checks"].append(
            {
                "check": "the two processes' shares add up to the device within 10 %",
                "value": share["sum_over_device"],
                "passed": share["sum_over_device"] is not None and abs(share["sum_over_device"] - 1) <= 0.10,
            }
        )
        report["checks"].append(
            {
                "check": "both shares are labelled scope=process",
                "value": [w["scope"] for w in share["workers"]],
                "passed": all(w["scope"] == "process" for w in share["workers"]),
            }
        )
    else:
        report["checks"].append({"check": "sharing run", "value": share.get("error"), "passed": False})
    report["ok"] = all(c["passed"] for c in report["checks"])
    a.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    for c in report["checks"]:
        print(f"{'PASS' if c['passed'] else 'FAIL'}  {c['check']}: {c.get('median', c.get('value'))}")
    print(f"figures: {a.out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
