"""A Hugging Face Trainer run under torchrun by test_distributed.py (gloo, CPU, tiny GPT-2).

The Trainer sets up DistributedDataParallel itself (``ddp_backend="gloo"``); GreenlmCallback's
plain EnergyTracker finds it runs as one rank of a torchrun job and joins the job's run on its
own, so the script is what a user writes for one process. Each rank writes its view of the
run to ``view-RANK.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _tiny import TokenDataset, tiny_gpt2

from greenlm.integrations.hf import GreenlmCallback


def main() -> None:
    from transformers import Trainer, TrainingArguments

    torch.set_num_threads(1)
    cb = GreenlmCallback(project="hf-dist", interval_s=0.05, flush_interval_s=0.2)
    args = TrainingArguments(
        output_dir=sys.argv[1],
        max_steps=6,
        per_device_train_batch_size=4,
        logging_steps=2,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        ddp_backend="gloo",
    )
    trainer = Trainer(model=tiny_gpt2(), args=args, train_dataset=TokenDataset(64), callbacks=[cb])
    trainer.train()
    r = cb.result
    view = {
        "rank": int(os.environ["RANK"]),
        "tracker": type(cb.tracker).__name__,
        "run_id": r.run_id,  # the job's run id on every rank (the result holds this rank's share)
        "group_run_id": (cb.tracker.distributed or {}).get("group_run_id"),
        "rank_energy_j": r.energy_j,
    }
    view["logged_energy"] = [h["greenlm_energy_j"] for h in trainer.state.log_history if "greenlm_energy_j" in h]
    # a file per rank: the ranks' stdout lines interleave in torchrun's output
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"view-{view['rank']}.json").write_text(json.dumps(view))


if __name__ == "__main__":
    main()
