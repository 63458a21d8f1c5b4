"""Training script run under torchrun by test_distributed.py (gloo, CPU, a tiny model).

What a user writes for one process: a plain ``EnergyTracker``, no rank logic. GPUs are the
replacement NVML devices of ``nvml_ranks.py`` (``$GREENLM_TEST_GPUS``; NVML is replaced at
the vendor boundary, greenlm's NVML code path is real). CPU and RAM are the real node-level
meters. ``--visible-one`` sets ``CUDA_VISIBLE_DEVICES`` to the rank's own GPU, as many
launch scripts do.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import nvml_ranks

nvml_ranks.install_from_env()

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

from greenlm import EnergyTracker  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--die-rank", type=int, default=-1)
    ap.add_argument("--die-step", type=int, default=10)
    ap.add_argument("--visible-one", action="store_true", help="CUDA_VISIBLE_DEVICES=<local rank>")
    ap.add_argument("--out", help="folder for each rank's view of its result")
    args = ap.parse_args()
    if args.visible_one:
        os.environ["CUDA_VISIBLE_DEVICES"] = os.environ["LOCAL_RANK"]

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    model = DistributedDataParallel(torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Linear(32, 1)))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    rank = dist.get_rank()
    tracker = EnergyTracker(project="dist", interval_s=0.05, flush_interval_s=0.2)
    with tracker:
        with tracker.phase("train"):
            for step in range(args.steps):
                if rank == args.die_rank and step == args.die_step:
                    os._exit(3)  # a rank dies without closing anything
                x = torch.randn(8, 16)
                loss = model(x).pow(2).mean()
                loss.backward()
                opt.step()
                opt.zero_grad()
                tracker.step()
                time.sleep(0.03)
    if args.out:
        r = tracker.result
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        view = {"rank": rank, "run_id": r.run_id, "distributed": tracker.distributed, "energy_j": r.energy_j}
        (out / f"view-{rank}.json").write_text(json.dumps(view))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
