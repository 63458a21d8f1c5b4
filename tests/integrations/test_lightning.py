"""PyTorch Lightning: a real Trainer fitting a tiny model; metrics reach its logger."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

pl = pytest.importorskip("pytorch_lightning")
import torch  # noqa: E402

from greenlm.meters.fake import ReplayMeter  # noqa: E402
from greenlm.store.runs import open_store  # noqa: E402


class TinyRegressor(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _loader(n: int = 64) -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)


def _trainer(tmp_path: Path, cb) -> pl.Trainer:
    from pytorch_lightning.loggers import CSVLogger

    return pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        logger=CSVLogger(str(tmp_path), name="csv"),
        callbacks=[cb],
        log_every_n_steps=2,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )


def _rows(trainer: pl.Trainer) -> list[dict[str, str]]:
    with open(Path(trainer.logger.log_dir) / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_fit_is_one_run_with_phases_and_logged_metrics(tmp_path: Path) -> None:
    from greenlm.integrations.lightning import GreenlmLightningCallback

    cb = GreenlmLightningCallback(meters=[ReplayMeter("gpu:0", "gpu", 150.0)], interval_s=0.05, project="pl")
    trainer = _trainer(tmp_path, cb)
    trainer.fit(TinyRegressor(), _loader(), _loader(16))
    r = cb.result
    assert r.status == "completed"
    assert r.steps == 16, "2 epochs x 8 batches"
    paths = {p.path for p in r.phases}
    assert {"fit", "fit/validate", "fit/train", "fit/train/validate"} <= paths
    assert r.phase("fit/train").steps == 16
    assert open_store().get_run(r.run_id).to_dict()["energy_j"] == pytest.approx(r.energy_j)

    rows = _rows(trainer)
    energy = [float(x["greenlm/energy_j"]) for x in rows if x.get("greenlm/energy_j")]
    assert len(energy) >= 8, "every 2 steps, and at each phase end"
    assert energy == sorted(energy)
    assert energy[-1] == pytest.approx(r.energy_j), "the last value is the stored run's total"
    fit_e = [float(x["greenlm/fit_energy_j"]) for x in rows if x.get("greenlm/fit_energy_j")]
    assert fit_e == [pytest.approx(r.phase("fit").energy_j)]
    co2 = [float(x["greenlm/co2e_g"]) for x in rows if x.get("greenlm/co2e_g")]
    assert co2[-1] == pytest.approx(r.co2e_g)


def test_test_call_is_its_own_run(tmp_path: Path) -> None:
    from greenlm.integrations.lightning import GreenlmLightningCallback

    cb = GreenlmLightningCallback(meters=[ReplayMeter("gpu:0", "gpu", 150.0)], interval_s=0.05, store=False)
    trainer = _trainer(tmp_path, cb)
    trainer.test(TinyRegressor(), _loader(16))
    assert [p.path for p in cb.result.phases] == ["test"]


def test_exception_closes_the_run_as_failed(tmp_path: Path) -> None:
    from greenlm.integrations.lightning import GreenlmLightningCallback

    class Boom(TinyRegressor):
        def training_step(self, batch, batch_idx):
            if batch_idx == 3:
                raise RuntimeError("diverged")
            return super().training_step(batch, batch_idx)

    cb = GreenlmLightningCallback(meters=[ReplayMeter("gpu:0", "gpu", 150.0)], interval_s=0.05, project="pl-fail")
    with pytest.raises(RuntimeError, match="diverged"):
        _trainer(tmp_path, cb).fit(Boom(), _loader())
    r = cb.result
    assert r.status == "failed" and "diverged" in (r.error or "")
    assert r.steps == 3
    assert open_store().get_run(r.run_id).to_dict()["status"] == "failed"


def test_power_is_the_mean_since_the_last_send_across_runs(tmp_path: Path) -> None:
    """fit() then validate() with one callback: every greenlm/power_w lies within what the
    replayed meter drew (100-300 W), none negative after the first run closed.
    """
    from greenlm.integrations.lightning import GreenlmLightningCallback

    trace = [(0.05 * i, 100.0 if i % 2 == 0 else 300.0) for i in range(2000)]
    cb = GreenlmLightningCallback(meters=[ReplayMeter("gpu:0", "gpu", trace)], interval_s=0.05, store=False)
    trainer = _trainer(tmp_path, cb)
    trainer.fit(TinyRegressor(), _loader(), _loader(16))
    trainer.validate(TinyRegressor(), _loader(16))
    assert len(cb.results) == 2
    powers = [float(x["greenlm/power_w"]) for x in _rows(trainer) if x.get("greenlm/power_w")]
    assert len(powers) >= 6
    # the window's clock starts a few microseconds before the meter's: 1 % of slack
    assert all(99.0 <= p <= 303.0 for p in powers), powers
