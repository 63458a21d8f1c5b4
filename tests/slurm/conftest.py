"""A real one-node Slurm cluster for the tests, started from Debian's packages.

munged, slurmctld and slurmd run as root (the tests run as root) with every file under a
temporary directory: their own munge key and socket, state and spool directories, logs, and
ports picked free on the loopback. One node with two CPUs, ``proctrack/linuxproc`` and
``task/none`` (no cgroups), ``jobacct_gather/linux`` (so ``sstat`` answers), no accounting
storage and no energy plugin, but the job completion log (``jobcomp/filetxt``), which
``sacct --completion`` reads. The cluster is stopped (``scontrol shutdown``, then the daemons
by their pid) when the session ends.

Skips when the binaries are missing or not running as root, unless GREENLM_REQUIRE_SLURM is
set (CI), in which case it fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BINARIES = ("munged", "slurmctld", "slurmd", "srun", "sbatch", "sacct", "sstat", "scontrol", "sinfo")
SEARCH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin"])


def _missing(reason: str) -> None:
    if os.environ.get("GREENLM_REQUIRE_SLURM"):
        pytest.fail(f"GREENLM_REQUIRE_SLURM is set but {reason}")
    pytest.skip(f"{reason}: install Debian's slurmctld, slurmd, slurm-client and munge to run the Slurm tests")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """A running test cluster: its config file, the environment to run Slurm commands with."""

    root: Path
    conf: Path
    node: str
    pids: list[int] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        e = {**os.environ, "SLURM_CONF": str(self.conf), "PATH": SEARCH}
        e.update(extra)
        return e

    def run(self, *cmd: str, timeout: float = 120, **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(cmd), env=self.env(), capture_output=True, text=True, timeout=timeout, check=False, **kw
        )

    def logs(self) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log"):
            p = self.root / name
            if p.exists():
                out.append(f"--- {name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-30:]))
        return "\n".join(out)


CONF = """\
ClusterName=greenlm-test
SlurmctldHost={node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.socket
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
AcctGatherEnergyType=acct_gather_energy/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={root}/jobcomp.txt
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
MinJobAge=600
KillWait=5
NodeName={node} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def _which(name: str) -> str | None:
    return shutil.which(name, path=SEARCH)


@pytest.fixture(scope="session")
def slurm() -> Iterator[Cluster]:
    """The test cluster, started once per session."""
    missing = [b for b in BINARIES if _which(b) is None]
    if missing:
        _missing(f"{', '.join(missing)} not found")
    if os.geteuid() != 0:
        _missing("the test cluster's daemons run as root and the tests do not")
    root = Path(tempfile.mkdtemp(prefix="greenlm-slurm-"))
    node = socket.gethostname().split(".")[0]
    for d in ("munge", "state", "spool"):
        (root / d).mkdir()
    os.chmod(root, 0o755)  # munged wants its socket's folder reachable
    os.chmod(root / "munge", 0o755)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o400)
    conf = root / "slurm.conf"
    conf.write_text(CONF.format(root=root, node=node, ctld_port=_free_port(), d_port=_free_port()))
    cluster = Cluster(root, conf, node)
    env = cluster.env()
    try:
        subprocess.run(
            [
                _which("munged") or "munged",
                "-f",
                f"--key-file={key}",
                f"--socket={root}/munge/munge.socket",
                f"--pid-file={root}/munge/munged.pid",
                f"--log-file={root}/munge/munged.log",
                f"--seed-file={root}/munge/seed",
            ],
            env=env,
            check=True,
            timeout=30,
            capture_output=True,
        )
        subprocess.run([_which("slurmctld") or "slurmctld", "-i"], env=env, check=True, timeout=30)
        subprocess.run([_which("slurmd") or "slurmd", "-N", node], env=env, check=True, timeout=30)
    except (subprocess.SubprocessError, OSError) as e:
        _stop(cluster)
        pytest.fail(f"the test Slurm cluster did not start: {e}\n{cluster.logs()}")
    deadline = time.monotonic() + 60
    state = ""
    while time.monotonic() < deadline:
        state = cluster.run("sinfo", "-h", "-o", "%T").stdout.strip()
        if state in ("idle", "mixed", "allocated"):
            break
        time.sleep(0.5)
    else:
        _stop(cluster)
        pytest.fail(f"the test Slurm node never became idle (state {state!r})\n{cluster.logs()}")
    yield cluster
    _stop(cluster)


def _stop(cluster: Cluster) -> None:
    with contextlib.suppress(Exception):
        cluster.run("scontrol", "shutdown", timeout=20)
    time.sleep(1.0)
    for pidfile in ("slurmd.pid", "slurmctld.pid", "munge/munged.pid"):
        p = cluster.root / pidfile
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(p.read_text().split()[0]), signal.SIGTERM)
    time.sleep(0.5)
    shutil.rmtree(cluster.root, ignore_errors=True)
