"""A stop signal that lands while a window is storing its run is held until the run is stored.

Launchers send SIGTERM to the survivors when a rank dies, often just as a rank is closing
(its collective failed first); before, the signal's default action could end the process in
the middle of the write. Here the destination itself sends SIGTERM during ``finish``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from greenlm.store import open_store

SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    from greenlm import EnergyTracker
    from greenlm.meters import ReplayMeter
    from greenlm.store import open_store

    class SigtermMidWrite:
        def __init__(self, url):
            self.store = open_store(url)
        def begin(self, run):
            self.store.begin_run(run)
        def flush(self, run_id, samples, progress):
            self.store.add_samples(run_id, samples, progress)
        def finish(self, result):
            os.kill(os.getpid(), signal.SIGTERM)   # lands now, while the run is being stored
            time.sleep(0.2)
            self.store.save_result(result)
            print("stored", flush=True)

    t = EnergyTracker(location="DEU", interval_s=0.02, store=SigtermMidWrite(sys.argv[1]),
                      meters=[ReplayMeter("gpu:0", "gpu", power_w=100.0)])
    with t:
        time.sleep(0.3)
    print("after the window", flush=True)   # never: SIGTERM's default action ends the process
""")


def test_sigterm_during_the_write_waits_for_the_run_to_be_stored(store_url, tmp_path):
    script = tmp_path / "s.py"
    script.write_text(SCRIPT)
    p = subprocess.run([sys.executable, str(script), store_url], capture_output=True, text=True, timeout=60)
    assert p.returncode == -signal.SIGTERM, "the signal still does what it did"
    assert p.stdout.splitlines() == ["stored"], p.stdout + p.stderr
    (run,) = open_store(store_url).list_runs()
    assert run.status == "completed" and run.result.energy_j > 20.0
