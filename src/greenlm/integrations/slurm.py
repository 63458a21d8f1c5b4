"""Slurm as a real engine: what the cluster itself says about a job, beside greenlm's figures.

The job's identity (job id, step, nodes, tasks) comes from the environment Slurm gives every
task (:func:`greenlm.tracking.ranks.slurm_facts`); this module asks Slurm's own tools, with a
timeout each, and parses what they print:

* ``sacct -P`` (needs accounting storage, slurmdbd): elapsed time, allocated CPUs and TRES,
  nodes, state, exit code and ``ConsumedEnergyRaw`` (joules) of a job or step. Without
  accounting storage, ``sacct --completion`` reads the job completion log
  (``JobCompType=jobcomp/filetxt``), which has a job's record once it has ended.
* ``sstat -P`` (asks the nodes, works while a step runs, no slurmdbd): the running step's
  ``ConsumedEnergyRaw`` and CPU use;
* ``scontrol show job -o`` and ``scontrol show config``: the allocation of a running job
  (nodes, CPUs, tasks, TRES, start, run time) and whether the cluster measures energy at all
  (``AcctGatherEnergyType``).

``ConsumedEnergy`` is Slurm's own measurement (acct_gather_energy: RAPL, IPMI, the GPUs'
counters... of the whole nodes of the step, sampled every ``AcctGatherNodeFreq`` seconds), so
it is an independent cross-check of greenlm's figure, not the same number: it covers every
process on those nodes and, with RAPL, no GPU. greenlm records it with its provenance under
``metadata["cross_checks"]`` and never adds it to its own totals.

``greenlm track`` inside a job reads this when the command ends (rank 0 only for a
multi-task step); ``greenlm slurm check RUN_ID`` compares a stored run with ``sacct`` after
the job.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)

#: What ``sacct`` is asked for, in this order.
SACCT_FIELDS = (
    "JobID",
    "JobName",
    "State",
    "ExitCode",
    "Elapsed",
    "ElapsedRaw",
    "Start",
    "End",
    "AllocCPUS",
    "AllocTRES",
    "NNodes",
    "NodeList",
    "NTasks",
    "ConsumedEnergyRaw",
)
#: What ``sstat`` is asked for (a running step).
SSTAT_FIELDS = ("JobID", "NTasks", "AveCPU", "ConsumedEnergyRaw", "TRESUsageInTot")
#: Seconds each Slurm command may take.
TIMEOUT_S = 10.0

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


# ----------------------------------------------------------------- parsing
def parse_duration(text: str | None) -> float | None:
    """Slurm's ``[DD-]HH:MM:SS[.mmm]`` / ``MM:SS[.mmm]`` in seconds; ``None`` for blank,
    ``UNLIMITED``, ``Unknown`` or anything else.
    """
    if not text:
        return None
    t = text.strip()
    m = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)", t)
    if not m:
        return None
    days, hours, minutes, seconds = m.groups()
    if days is not None and hours is None:  # D-MM:SS is not a Slurm format; D-HH:MM is
        hours, minutes, seconds = minutes, seconds, "0"
    return int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)


def parse_tres(text: str | None) -> dict[str, str]:
    """``cpu=2,mem=1M,node=1,billing=2,energy=5400`` as a dict (values as Slurm wrote them)."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        k, sep, v = part.partition("=")
        if sep and k.strip():
            out[k.strip()] = v.strip()
    return out


def _int(v: str | None) -> int | None:
    if v is None:
        return None
    v = v.strip()
    return int(v) if v.isdigit() else None


def parse_pipes(text: str, fields: Sequence[str] | None = None) -> list[dict[str, str]]:
    """``sacct -P`` / ``sstat -P`` output as one dict per line: the header gives the field
    names when ``fields`` is ``None`` (``--noheader`` output needs them).
    """
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return []
    names = list(fields) if fields is not None else lines.pop(0).split("|")
    out = []
    for ln in lines:
        cells = ln.split("|")
        if len(cells) < len(names):
            cells += [""] * (len(names) - len(cells))
        out.append(dict(zip(names, cells)))
    return out


def parse_scontrol(text: str) -> dict[str, str]:
    """``scontrol show ... -o`` (one line of ``Key=Value`` words) as a dict."""
    out: dict[str, str] = {}
    for word in text.split():
        k, sep, v = word.partition("=")
        if sep and k:
            out[k] = v
    return out


def record(row: dict[str, str]) -> dict[str, Any]:
    """One ``sacct`` row in greenlm's units: seconds, joules, counts; blank fields left out."""
    tres = parse_tres(row.get("AllocTRES"))
    energy = _int(row.get("ConsumedEnergyRaw"))
    elapsed = _int(row.get("ElapsedRaw"))
    out: dict[str, Any] = {
        "job_step": row.get("JobID") or None,
        "name": row.get("JobName") or None,
        "state": (row.get("State") or "").split(" ")[0] or None,
        "exit_code": row.get("ExitCode") or None,
        "elapsed_s": float(elapsed) if elapsed is not None else parse_duration(row.get("Elapsed")),
        "start": row.get("Start") or None,
        "end": row.get("End") or None,
        "alloc_cpus": _int(row.get("AllocCPUS")),
        "alloc_tres": tres or None,
        "nodes": _int(row.get("NNodes")),
        "nodelist": row.get("NodeList") or None,
        "tasks": _int(row.get("NTasks")),
        # Slurm writes 0 when no energy plugin ran, and a huge sentinel when it failed
        "consumed_energy_j": float(energy) if energy is not None and 0 < energy < 2**62 else None,
    }
    return {k: v for k, v in out.items() if v is not None}


# ----------------------------------------------------------------- asking Slurm
def energy_plugin(run: Runner = _run) -> str | None:
    """The cluster's ``AcctGatherEnergyType`` (``acct_gather_energy/none`` when it measures
    nothing), or ``None`` if ``scontrol show config`` cannot say.
    """
    try:
        p = run(["scontrol", "show", "config"])
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"^AcctGatherEnergyType\s*=\s*(\S+)", p.stdout or "", re.MULTILINE)
    return m.group(1) if m else None


def sacct(job_step: str, run: Runner = _run) -> tuple[list[dict[str, Any]], str]:
    """``sacct`` records of ``job_step`` (``123``, ``123.0``, ``123.batch``) and where they came
    from: accounting storage, else the job completion log (a job's record once it ended).
    """
    fmt = ",".join(SACCT_FIELDS)
    p = run(["sacct", "-j", job_step, "-P", "--noheader", f"--format={fmt}"])
    if p.returncode == 0 and "disabled" not in (p.stderr + p.stdout).lower():
        return [record(r) for r in parse_pipes(p.stdout, SACCT_FIELDS)], "sacct (accounting storage)"
    job = job_step.split(".", 1)[0]
    c = run(["sacct", "--completion", "-j", job, "-P", "--noheader", f"--format={fmt}"])
    if c.returncode != 0:
        why = (c.stderr or p.stderr or "").strip().splitlines()
        raise RuntimeError(why[-1] if why else f"sacct exited with {c.returncode}")
    return [record(r) for r in parse_pipes(c.stdout, SACCT_FIELDS)], "sacct --completion (job completion log)"


def sstat(job_step: str, run: Runner = _run) -> dict[str, Any] | None:
    """The running step's figures from ``sstat`` (``None`` if it has none)."""
    p = run(["sstat", "-j", job_step, "-P", "--noheader", f"--format={','.join(SSTAT_FIELDS)}"])
    if p.returncode != 0:
        return None
    rows = parse_pipes(p.stdout, SSTAT_FIELDS)
    if not rows:
        return None
    energy = sum(_int(r.get("ConsumedEnergyRaw")) or 0 for r in rows)
    return {
        "job_step": rows[0].get("JobID"),
        "tasks": sum(_int(r.get("NTasks")) or 0 for r in rows),
        "consumed_energy_j": float(energy) if energy > 0 else None,
    }


def job_allocation(job_id: str, run: Runner = _run) -> dict[str, Any] | None:
    """What ``scontrol show job`` says of a running job: nodes, CPUs, tasks, TRES, times."""
    p = run(["scontrol", "show", "job", "-o", job_id])
    if p.returncode != 0 or not p.stdout.strip():
        return None
    d = parse_scontrol(p.stdout.strip().splitlines()[0])
    out: dict[str, Any] = {
        "state": d.get("JobState"),
        "partition": d.get("Partition"),
        "nodes": _int(d.get("NumNodes")),
        "nodelist": d.get("NodeList"),
        "alloc_cpus": _int(d.get("NumCPUs")),
        "tasks": _int(d.get("NumTasks")),
        "alloc_tres": parse_tres(d.get("TRES")) or None,
        "start": d.get("StartTime"),
        "run_time_s": parse_duration(d.get("RunTime")),
        "time_limit_s": parse_duration(d.get("TimeLimit")),
    }
    return {k: v for k, v in out.items() if v is not None}


def read_accounting(slurm: dict[str, Any], run: Runner = _run) -> dict[str, Any]:
    """What Slurm says about the job step in ``slurm`` (facts from the environment), now.

    Never raises: a tool that is missing, slow or refuses becomes a note. ``energy`` is the
    independent cross-check (or why there is none).
    """
    job = str(slurm.get("job_id") or "")
    step = f"{job}.{slurm.get('step_id', 'batch')}"
    out: dict[str, Any] = {"job_step": step, "notes": []}
    if not job or (shutil.which("scontrol") is None and run is _run):
        out["notes"].append("Slurm's commands are not on PATH")
        return out
    try:
        alloc = job_allocation(job, run)
        if alloc:
            out["allocation"] = {**alloc, "source": "scontrol show job"}
        plugin = energy_plugin(run)
        out["energy_plugin"] = plugin
        try:
            recs, source = sacct(step, run)
            mine = next((r for r in recs if r.get("job_step") == step), None)
            if mine:
                out["sacct"] = {**mine, "source": source}
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            out["notes"].append(f"sacct: {e}")
        stat = sstat(step, run)
        if stat:
            out["sstat"] = {**stat, "source": "sstat (the running step)"}
        energy_j = (out.get("sstat") or {}).get("consumed_energy_j") or (out.get("sacct") or {}).get(
            "consumed_energy_j"
        )
        if plugin in (None, "acct_gather_energy/none"):
            out["energy"] = {
                "available": False,
                "reason": f"the cluster has no energy accounting (AcctGatherEnergyType={plugin or 'unknown'})",
            }
        elif energy_j is None:
            out["energy"] = {"available": False, "reason": f"{plugin} reported no energy for step {step} yet"}
        else:
            out["energy"] = {
                "available": True,
                "consumed_energy_j": energy_j,
                "source": f"Slurm {plugin}, {'sstat' if out.get('sstat', {}).get('consumed_energy_j') else 'sacct'} "
                f"ConsumedEnergyRaw of step {step}",
                "scope": "the whole nodes of the step (every process on them), as Slurm's plugin measures them",
            }
    except (OSError, subprocess.SubprocessError) as e:
        out["notes"].append(f"Slurm could not be asked: {e}")
    return out


def cross_check(accounting: dict[str, Any]) -> dict[str, Any] | None:
    """Slurm's ConsumedEnergy as an entry of ``metadata["cross_checks"]`` (``None`` if none)."""
    e = accounting.get("energy") or {}
    if not e.get("available"):
        return None
    return {
        "name": "Slurm ConsumedEnergy",
        "energy_j": e["consumed_energy_j"],
        "source": e["source"],
        "scope": e["scope"],
        "independent": True,
    }


def compare(run: dict[str, Any], records: list[dict[str, Any]], source: str) -> dict[str, Any]:
    """A stored run (JSON dict) beside Slurm's record of its job step (``greenlm slurm check``)."""
    s = (run.get("metadata") or {}).get("slurm") or {}
    step = f"{s.get('job_id')}.{s.get('step_id', 'batch')}"
    rec = next((r for r in records if r.get("job_step") == step), None)
    if rec is None:  # the completion log has jobs, not steps
        rec = next((r for r in records if r.get("job_step") == str(s.get("job_id"))), None)
    out: dict[str, Any] = {
        "run_id": run.get("run_id"),
        "job_step": step,
        "slurm_record": rec,
        "source": source,
        "greenlm": {"duration_s": run.get("duration_s"), "energy_j": run.get("energy_j")},
    }
    if rec and rec.get("elapsed_s") and run.get("duration_s"):
        out["duration_ratio"] = float(run["duration_s"]) / float(rec["elapsed_s"])
    if rec and rec.get("consumed_energy_j") and run.get("energy_j"):
        out["energy_ratio"] = float(run["energy_j"]) / float(rec["consumed_energy_j"])
    return out


__all__ = [
    "SACCT_FIELDS",
    "compare",
    "cross_check",
    "energy_plugin",
    "job_allocation",
    "parse_duration",
    "parse_pipes",
    "parse_scontrol",
    "parse_tres",
    "read_accounting",
    "record",
    "sacct",
    "sstat",
]
