"""A real torch training loop on this CPU, tracked end to end (modeled CPU/RAM energy)."""

from __future__ import annotations

import pytest

from greenlm import EnergyTracker
from greenlm.store import open_store

torch = pytest.importorskip("torch")


def test_real_training_loop_is_measured_by_phase_and_step(store_url):
    torch.manual_seed(0)
    model = torch.nn.TransformerEncoder(
        torch.nn.TransformerEncoderLayer(d_model=64, nhead=4, dim_feedforward=128, batch_first=True),
        num_layers=2,
    )
    head = torch.nn.Linear(64, 2)
    opt = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=1e-3)
    x = torch.randn(32, 16, 64)
    y = torch.randint(0, 2, (32,))
    t = EnergyTracker(
        project="real-torch",
        location="DEU",
        interval_s=0.05,
        store=store_url,
        metadata={"params": sum(p.numel() for p in model.parameters())},
    )
    with t:
        with t.phase("train"):
            for _ in range(15):
                with t.phase("forward"):
                    loss = torch.nn.functional.cross_entropy(head(model(x).mean(1)), y)
                with t.phase("backward"):
                    loss.backward()
                with t.phase("optimizer"):
                    opt.step()
                    opt.zero_grad()
                t.step()
        with t.phase("eval"), torch.no_grad():
            head(model(x).mean(1))
    r = t.result
    cpu = r.component("cpu")
    assert cpu.provenance == "modeled" and cpu.energy_j > 0
    assert cpu.low_j < cpu.energy_j < cpu.high_j
    train = r.phase("train")
    assert train.steps == 15 and r.steps == 15
    parts = sum(r.phase(f"train/{p}").energy_j for p in ("forward", "backward", "optimizer"))
    assert 0.5 * train.energy_j < parts <= train.energy_j * 1.001
    assert r.phase("train/backward").energy_j > 0
    # average CPU power must be physically plausible for this machine's model
    assert 0 < cpu.energy_j / r.duration_s < 500
    stored = open_store(store_url).get_run(r.run_id).to_dict()
    assert stored["status"] == "completed" and stored["metadata"]["params"] > 0
    assert [p["path"] for p in stored["phases"]] == [p.path for p in r.phases]
