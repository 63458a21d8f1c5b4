"""The harness on the real all-MiniLM-L6-v2 with greenlm's own tracker."""

import pytest

from greenlm.optimize.report import notes
from greenlm.optimize.runner import OptimizeConfig, optimize


def test_minilm_end_to_end_with_the_real_tracker(tmp_path):
    report = optimize(
        OptimizeConfig(
            model="minilm",
            task="embedding",
            techniques="int8,bf16,prune:0.3,heads:0.25,heads:0.25+recover",
            repeats=2,
            samples=16,
            batch_size=4,
            location="DEU",
            report_dir=tmp_path,
        )
    )
    base = report.variant("baseline")
    int8, bf16, pruned = (report.variant(n) for n in ("int8", "bf16", "prune:0.3"))
    assert base.provenance in ("modeled", "sampled", "counter")
    assert base.energy_j_per_1k > 0 and base.latency_p50_ms > 0
    # quantized weights are smaller; unstructured sparsity is not (dense storage)
    assert int8.size_mb < 0.75 * base.size_mb
    assert bf16.size_mb < 0.55 * base.size_mb
    assert pruned.size_mb == pytest.approx(base.size_mb, rel=0.01)
    # bf16 embeddings stay faithful; int8 stays recognisably the same model
    assert bf16.quality.value > 0.99
    assert int8.quality.value > 0.9
    heads = report.variant("heads:0.25")
    assert heads.parameter_count < base.parameter_count
    # recovery fine-tuning brings the pruned encoder back toward the original (measured
    # here: mean cosine 0.87 -> 0.91 after 3 epochs), at the same size, and counts its energy
    recovered = report.variant("heads:0.25+recover:3")
    assert recovered.parameter_count == heads.parameter_count
    assert recovered.quality.value > heads.quality.value + 0.02
    assert recovered.facts["recover_energy_j"] > 0 and recovered.facts["recover_steps"] > 0
    assert "recovery fine-tuning" in recovered.description
    (line,) = [n for n in notes(report) if n.startswith(recovered.name + ":")]
    assert "pays back its recovery" in line, "the notes say when the recovery energy is paid back (or never)"
    rec = report.recommendation
    assert report.variant(rec.variant).quality_drop <= 0.01
    # 2 interleaved rounds (up to 4 for the undecided): every variant has an interval; a variant
    # that is recommended saves significantly, else the baseline is kept
    for v in report.variants[1:]:
        assert 2 <= v.vs_baseline.rounds <= 4 and v.vs_baseline.low < v.vs_baseline.high
    assert rec.variant == "baseline" or report.variant(rec.variant).vs_baseline.verdict == "saves"
    assert (tmp_path / "pareto.png").is_file() and (tmp_path / "optimize.csv").is_file()
    assert report.settings["location"] == "DEU"
