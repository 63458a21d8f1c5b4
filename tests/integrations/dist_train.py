"""Training script run under torchrun by test_distributed.py (gloo, CPU, a tiny model).

No GPU here: each rank's GPU is a ReplayMeter at 100 + 10 x local_rank W (NVML replaced at
the vendor boundary, labelled ``replay`` in the run's meters). CPU and RAM are the real
node-level meters, attributed to this node's torchrun agent.
"""

from __future__ import annotations

import argparse
import os
import signal
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from greenlm.integrations.distributed import DistributedTracker, RankInfo, detect_meters
from greenlm.meters.fake import ReplayMeter


class _SigtermOnClose:
    """Tracker listener: SIGTERM to this process as soon as the rank's window closes."""

    def on_stop(self, result: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--die-rank", type=int, default=-1)
    ap.add_argument("--die-step", type=int, default=10)
    ap.add_argument(
        "--term-rank0-while-closing",
        action="store_true",
        help="rank 0 gets SIGTERM the moment its window starts closing (as torchrun does when a rank dies)",
    )
    args = ap.parse_args()

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    info = RankInfo.from_env()
    gpu = ReplayMeter(f"gpu:{info.local_rank}", "gpu", power_w=100.0 + 10 * info.local_rank, provenance="sampled")
    node_meters, _ = detect_meters(info, gpus=False)
    model = DistributedDataParallel(torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Linear(32, 1)))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    listeners = [_SigtermOnClose()] if args.term_rank0_while_closing and info.rank == 0 else []
    tracker = DistributedTracker(
        project="dist",
        meters=[gpu, *node_meters],
        interval_s=0.05,
        flush_interval_s=0.2,
        gather_timeout_s=60,
        listeners=listeners,
    )
    with tracker:
        with tracker.phase("train"):
            for step in range(args.steps):
                if dist.get_rank() == args.die_rank and step == args.die_step:
                    os._exit(3)  # a rank dies without closing anything
                x = torch.randn(8, 16)
                loss = model(x).pow(2).mean()
                loss.backward()
                opt.step()
                opt.zero_grad()
                tracker.step()
                time.sleep(0.03)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
