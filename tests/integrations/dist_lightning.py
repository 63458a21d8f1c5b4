"""A PyTorch Lightning Trainer run under torchrun by test_distributed.py (DDP, gloo, CPU).

Lightning finds torchrun's environment and runs DDP over the ranks torchrun started;
GreenlmLightningCallback builds a plain EnergyTracker, which joins the job's run on its own.
Each rank writes its view of the run, and what reached its loggers, to ``view-RANK.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

from greenlm.integrations.lightning import GreenlmLightningCallback


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class Recorder(pl.loggers.logger.Logger):
    """A logger that keeps what it was sent (Lightning calls it on global rank 0 only)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[dict[str, float]] = []

    @property
    def name(self) -> str:
        return "recorder"

    @property
    def version(self) -> str:
        return "0"

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.sent.append({k: float(v) for k, v in metrics.items()})


def _loader(n: int = 64) -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)


def main() -> None:
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    cb = GreenlmLightningCallback(project="pl-dist", interval_s=0.05, flush_interval_s=0.2)
    rec = Recorder()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=int(os.environ["LOCAL_WORLD_SIZE"]),
        strategy="ddp",
        logger=rec,
        callbacks=[cb],
        log_every_n_steps=2,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    trainer.fit(Tiny(), _loader(), _loader(16))
    r = cb.result
    view = {
        "rank": trainer.global_rank,
        "tracker": type(cb.tracker).__name__,
        "run_id": r.run_id,
        "group_run_id": (cb.tracker.distributed or {}).get("group_run_id"),
        "sent_energy": [m["greenlm/energy_j"] for m in rec.sent if "greenlm/energy_j" in m],
        "phases": [p.path for p in r.phases],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"view-{view['rank']}.json").write_text(json.dumps(view))


if __name__ == "__main__":
    main()
