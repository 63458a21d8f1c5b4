import dataclasses
import json
import time
from typing import Any

import pytest

from greenlm.errors import ConfigError, GreenlmError
from greenlm.optimize.errors import NotAModelError, UnknownTaskError, UnknownTechniqueError
from greenlm.optimize.harness import Window
from greenlm.optimize.report import CSV_COLUMNS, to_json, write_report
from greenlm.optimize.runner import OptimizeConfig, load_model, optimize
from greenlm.optimize.runner import apply_spec as ORIGINAL_APPLY_SPEC

VARIANT_KEYS = {
    "name",
    "technique",
    "params",
    "energy_j_per_1k",
    "energy_j_per_token",
    "latency_p50_ms",
    "latency_p95_ms",
    "throughput_per_s",
    "peak_memory_mb",
    "size_mb",
    "quality",
    "fidelity",
    "provenance",
    "repeats",
    "spread",
    "skipped_reason",
    "vs_baseline",
    "energy_by_round",
}


@pytest.fixture(scope="module")
def embedding_report(tokenizer):
    from tests.optimize.conftest import FakeMeter, tiny_bert

    cfg = OptimizeConfig(
        model="tiny-bert",
        task="embedding",
        techniques="int8,bf16,prune:0.5,heads:0.5,bnb4,lowrank:energy=1",
        repeats=2,
        samples=6,
        batch_size=3,
        location="DEU",
    )
    return optimize(cfg, measure=FakeMeter(), loaded=(tokenizer, tiny_bert()))


def test_report_covers_baseline_and_every_variant(embedding_report):
    r = embedding_report
    assert [v.name for v in r.variants] == [
        "baseline",
        "int8",
        "bf16",
        "prune:0.5",
        "heads:0.5",
        "bnb4",
        "lowrank:energy=1",
    ]
    base = r.variant("baseline")
    assert base.quality.metric == "cosine_to_baseline"
    assert base.quality.value == pytest.approx(1.0, abs=1e-5)
    assert r.variant("bf16").quality.value > 0.99
    assert r.variant("bf16").size_mb < 0.6 * base.size_mb
    assert r.variant("heads:0.5").parameter_count < base.parameter_count
    assert r.variant("prune:0.5").size_mb == pytest.approx(base.size_mb, rel=0.01)
    # techniques that do not apply are reported, not raised
    assert "CUDA" in r.variant("bnb4").skipped_reason
    assert "pays only when" in r.variant("lowrank:energy=1").skipped_reason
    assert r.variant("bnb4").energy_j_per_1k is None
    for v in r.variants:
        if not v.skipped:
            assert v.energy_j_per_1k > 0 and v.provenance == "modeled"
            # every model is measured once per round (2), undecided ones in extra rounds (up
            # to 4) with the baseline, which is in every round
            assert 2 <= v.repeats == len(v.energy_by_round) <= 4
            if v.name != "baseline":
                assert v.vs_baseline.rounds == v.repeats
                assert v.vs_baseline.low <= v.vs_baseline.ratio <= v.vs_baseline.high
    assert base.repeats == r.settings["rounds"] == max(v.repeats for v in r.variants if not v.skipped)
    assert "energy_round_cv" in base.facts and "energy_trend" in base.facts
    # 4 variants measured (2 skipped): each interval is at 1 - 0.05 / 4, so all hold together at 95 %
    assert r.settings["confidence_per_variant"] == pytest.approx(0.9875)


def test_recommendation_respects_the_quality_budget(embedding_report):
    r = embedding_report
    rec = r.recommendation
    chosen = r.variant(rec.variant)
    assert chosen.quality_drop <= r.max_quality_drop
    if rec.variant == "baseline":
        assert rec.energy_ratio == 1.0 and not rec.significant
    else:
        assert chosen.vs_baseline.verdict == "saves"
        assert rec.energy_ratio == pytest.approx(1 / chosen.vs_baseline.ratio)
    # no variant saving significantly more within the budget was passed over
    for v in r.variants:
        c = v.vs_baseline
        if c and c.verdict == "saves" and v.quality_drop <= r.max_quality_drop and rec.variant == "baseline":
            raise AssertionError(f"{v.name} saves significantly within budget but the baseline was kept")


def test_json_is_stable_and_complete(embedding_report):
    d = json.loads(to_json(embedding_report))
    assert {"model", "task", "baseline", "variants", "recommendation"} <= set(d)
    assert d["baseline"] == "baseline"
    for v in d["variants"]:
        assert set(v) >= VARIANT_KEYS
    assert {"variant", "energy_ratio", "quality_drop", "co2e_g_saved_per_million"} <= set(d["recommendation"])
    assert "modeled" in d["provenance_notes"]["energy_j_per_1k"]


def test_report_files(embedding_report, tmp_path):
    paths = write_report(embedding_report, tmp_path / "out")
    assert json.loads(paths["json"].read_text())["task"] == "embedding"
    header = paths["csv"].read_text().splitlines()[0].split(",")
    assert header == list(CSV_COLUMNS)
    assert len(paths["csv"].read_text().splitlines()) == 1 + len(embedding_report.variants)
    assert paths["png"].stat().st_size > 1000


def test_causal_lm_reports_energy_per_token_and_perplexity(llama, tokenizer, fake_meter):
    docs = [
        f"the {w} sat on the mat and looked at the {w} again." * 3
        for w in ("cat", "dog", "bird", "fish", "cow", "owl", "fox", "bee")
    ]
    data_cfg = OptimizeConfig(
        model="tiny-llama",
        task="causal-lm",
        techniques="bf16,ffn:0.5,ffn:0.5+recover:1",
        repeats=1,
        samples=2,
        max_new_tokens=4,
        max_quality_drop=0.05,
    )
    import greenlm.optimize.runner as runner

    orig = runner.load_data
    runner.load_data = lambda task, data: (docs, None)
    try:
        r = optimize(data_cfg, measure=fake_meter, loaded=(tokenizer, llama))
    finally:
        runner.load_data = orig
    base = r.variant("baseline")
    assert base.quality.metric == "perplexity" and base.quality.value > 1
    assert base.fidelity.metric == "kl_to_baseline"
    assert base.fidelity.value == pytest.approx(0.0, abs=1e-4)
    assert base.metrics["top1_agreement"] == pytest.approx(1.0)
    assert base.energy_j_per_token == pytest.approx(base.energy_j_per_1k / 1000 / 4, rel=1e-6)
    ffn = r.variant("ffn:0.5")
    assert ffn.quality_drop == pytest.approx(ffn.quality.value / base.quality.value - 1)
    # recovery trains a pruned decoder too (on the original's next-token distributions; a
    # random tiny model has nothing to recover, so only that it ran and was counted)
    recovered = r.variant("ffn:0.5+recover:1")
    assert not recovered.skipped and recovered.parameter_count == ffn.parameter_count
    assert recovered.facts["recover_steps"] >= 1 and recovered.facts["recover_energy_j"] > 0
    assert recovered.fidelity.value >= 0.0 and recovered.quality.value > 1
    assert r.recommendation.energy_metric == "energy_j_per_token"


class DriftingMeter:
    """Every window costs 8 % more than the one before, whatever ran in it: a machine getting
    busier, and nothing else (deterministic, so the test is too).
    """

    def __init__(self):
        self.energy_j = 10.0

    def __call__(self, fn):
        t0 = time.perf_counter()
        fn()
        self.energy_j *= 1.08
        return Window(self.energy_j, time.perf_counter() - t0, "modeled", "drifting fake meter")


def test_a_drift_during_the_run_favours_no_variant(bert, tokenizer, same_technique):
    # two identical copies of the baseline, measured while the "machine" gets 1.08^18 = 4x
    # busier: one after the other, the later one would look 1.5x costlier; interleaved in
    # rounds, each copy's ratio to the baseline stays near 1 and neither is a saving
    cfg = OptimizeConfig(
        model="tiny-bert", task="embedding", techniques="same:1,same:2", repeats=6, samples=48, batch_size=8
    )
    r = optimize(cfg, measure=DriftingMeter(), loaded=(tokenizer, bert))
    for name in ("same:1", "same:2"):
        c = r.variant(name).vs_baseline
        assert c.verdict != "saves", (name, c)
        assert 0.75 < c.ratio < 1.33
    assert r.recommendation.variant == "baseline"
    assert any("drifted" in w for w in r.warnings)


def test_one_round_cannot_recommend_a_saving(bert, tokenizer, fake_meter):
    cfg = OptimizeConfig(model="tiny-bert", task="embedding", techniques="heads:0.5", repeats=1, samples=4)
    r = optimize(cfg, measure=fake_meter, loaded=(tokenizer, bert))
    assert r.variant("heads:0.5").vs_baseline.verdict == "not enough rounds"
    assert r.recommendation.variant == "baseline"
    assert any("One round only" in w for w in r.warnings)


def test_bad_inputs_fail_before_any_work(tmp_path):
    with pytest.raises(UnknownTechniqueError):
        optimize(OptimizeConfig(techniques="int9"))
    with pytest.raises(ConfigError, match="repeats"):
        optimize(OptimizeConfig(repeats=0))
    with pytest.raises(ConfigError, match="max-quality-drop"):
        optimize(OptimizeConfig(max_quality_drop=-1))
    with pytest.raises(UnknownTaskError):
        optimize(OptimizeConfig(task="translation"))
    with pytest.raises(ConfigError, match="confidence"):
        optimize(OptimizeConfig(confidence=1.0))
    with pytest.raises(ConfigError, match="min-saving"):
        optimize(OptimizeConfig(min_saving=-0.1))


def test_a_path_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    for bad in (tmp_path, tmp_path / "notes.txt", tmp_path / "missing"):
        with pytest.raises(NotAModelError, match=r"config\.json") as e:
            load_model(str(bad), None)
        assert isinstance(e.value, GreenlmError)


def test_a_folder_with_a_broken_config(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(NotAModelError, match="could not load"):
        load_model(str(tmp_path), None)


def test_a_local_model_folder_is_loaded_and_its_task_inferred(llama, tokenizer, tmp_path):
    llama.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    _tok, model, task = load_model(str(tmp_path), None)
    assert task == "causal-lm" and hasattr(model, "generate")


def test_a_decoder_serves_as_a_feature_extractor_for_classification(llama, tokenizer, fake_meter, monkeypatch):
    import greenlm.optimize.runner as runner

    texts = [f"{'great fun' if i % 2 else 'dull and slow'} film {i}" for i in range(20)]
    monkeypatch.setattr(runner, "load_data", lambda task, data: (texts, [i % 2 for i in range(20)]))
    r = optimize(
        OptimizeConfig(model="tiny-llama", task="classification", techniques="bf16", repeats=1, samples=4),
        measure=fake_meter,
        loaded=(tokenizer, llama),
    )
    base = r.variant("baseline")
    assert base.quality.metric == "accuracy" and 0 <= base.quality.value <= 1
    assert base.fidelity.value == 1.0  # the baseline agrees with itself


def _scripted_passes(monkeypatch, baseline, fractions):
    """Replace the measured pass: a model's n-th window costs its fraction of 100 J times a
    scatter of 8 % (seeded by model and n, so the test is deterministic)."""
    import random

    import greenlm.optimize.runner as runner
    from greenlm.optimize.harness import Timed

    calls: dict[int, int] = {}
    order: list[Any] = []  # the variants' models, in the order they were built

    def apply_spec(*args, **kwargs):
        t = ORIGINAL_APPLY_SPEC(*args, **kwargs)
        order.append(t.model)
        return t

    def fake(model, run, batches, measure):
        n = calls[id(model)] = calls.get(id(model), 0) + 1
        k = 0 if model is baseline else order.index(model) + 1
        fraction = 1.0 if k == 0 else fractions[k - 1]
        scatter = 1 + random.Random(1000 * k + n).gauss(0, 0.08)
        return Timed(Window(100 * fraction * scatter, 0.5, "modeled", "scripted"), [1.0], 0, 0.5)

    monkeypatch.setattr(runner, "measure_pass", fake)
    monkeypatch.setattr(runner, "apply_spec", apply_spec)


def test_an_undecided_saving_gets_extra_rounds_until_decided(bert, tokenizer, same_technique, monkeypatch):
    # same:1 "costs" 0.85 of the baseline, same:2 exactly as much, both within the budget;
    # after 3 rounds the scatter leaves same:1 undecided: extra rounds (baseline and the
    # undecided only) settle it as a saving; same:2 never becomes one
    _scripted_passes(monkeypatch, bert, [0.85, 1.0])
    cfg = OptimizeConfig(
        model="tiny-bert", task="embedding", techniques="same:1,same:2", repeats=3, max_repeats=12, samples=4
    )
    r = optimize(cfg, measure=None, loaded=(tokenizer, bert))
    first, second = r.variant("same:1").vs_baseline, r.variant("same:2").vs_baseline
    assert first.verdict == "saves" and 3 < first.rounds <= 12, first
    assert second.verdict != "saves"
    assert r.settings["rounds"] == max(first.rounds, second.rounds) and r.settings["max_rounds"] == 12
    assert r.recommendation.variant == "same:1"
    # without extra rounds the same scatter leaves it undecided, and the baseline is kept
    _scripted_passes(monkeypatch, bert, [0.85, 1.0])
    r = optimize(dataclasses.replace(cfg, max_repeats=3), measure=None, loaded=(tokenizer, bert))
    assert r.variant("same:1").vs_baseline.rounds == 3
    assert r.variant("same:1").vs_baseline.verdict == "no significant difference"
    assert r.recommendation.variant == "baseline"
