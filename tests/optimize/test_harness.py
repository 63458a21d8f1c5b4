import statistics

import pytest
import torch

from greenlm.optimize.harness import measure_variant, percentile


def test_percentile_interpolates():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5.0], 95) == 5.0


def test_energy_per_1k_follows_the_window_energy(bert, tokenizer, fake_meter):
    batches = [tokenizer(["a short sentence", "another one"], return_tensors="pt", padding=True)] * 3
    calls = []

    def run(model, batch):
        calls.append(1)
        with torch.inference_mode():
            model(**batch)
        return 0

    m = measure_variant(bert, run, batches, [2, 2, 2], fake_meter, repeats=3)
    assert len(calls) == 3 + 3 * 3  # one warm-up pass, then three measured passes
    assert len(fake_meter.windows) == 3
    per_1k = sorted(w.energy_j / 6 * 1000 for w in fake_meter.windows)
    assert m.energy_j_per_1k == pytest.approx(per_1k[1])
    assert m.spread["energy_j_per_1k_min"] <= m.energy_j_per_1k <= m.spread["energy_j_per_1k_max"]
    assert m.spread["energy_j_per_1k_model_low"] < m.energy_j_per_1k
    assert m.energy_j_per_token is None
    assert 0 < m.latency_p50_ms <= m.latency_p95_ms
    assert m.throughput_per_s > 0
    assert m.provenance == "modeled"
    assert m.size_mb > 0 and m.peak_memory_mb >= m.size_mb * 0.9
    assert m.repeats == 3


def test_generated_tokens_give_energy_per_token(bert, fake_meter):
    m = measure_variant(bert, lambda model, b: 8, [None, None], [1, 1], fake_meter, repeats=2)
    per_token = [w.energy_j / 16 for w in fake_meter.windows]  # 2 calls x 8 tokens a window
    assert m.energy_j_per_token == pytest.approx(statistics.median(per_token))
    assert m.energy_j_per_1k == pytest.approx(statistics.median(w.energy_j / 2 * 1000 for w in fake_meter.windows))
