"""`greenlm bench serve`: the sweep, its exact JSON form, the report, against a proxy on loopback
in front of fake_engine.py (a stand-in engine with a known token rate) and a replay meter."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("matplotlib")

from greenlm.errors import ConfigError
from greenlm.meters.fake import ReplayMeter
from greenlm.serving.bench import (
    BenchOptions,
    load_prompts,
    pareto_front,
    percentile,
    run_bench,
    table,
    write_report,
)

from ._helpers import FakeEngine, ProxyThread

POINT_KEYS = {
    "concurrency": int,
    "requests": int,
    "prompt_tokens": int,
    "output_tokens": int,
    "duration_s": float,
    "energy_j": float,
    "energy_low_j": float,
    "energy_high_j": float,
    "j_per_output_token": float,
    "j_per_request": float,
    "output_tokens_per_s": float,
    "ttft_p50_s": float,
    "ttft_p95_s": float,
    "itl_p50_s": float,
    "itl_p95_s": float,
    "power_w": float,
    "provenance": str,
}


def test_a_sweep_gives_the_exact_form_and_figures_that_hang_together(store_url, tmp_path, capsys):
    watts = 150.0
    with (
        FakeEngine("--token-delay-ms", "3") as eng,
        ProxyThread(
            eng.url,
            model="fake-model",
            meters=[ReplayMeter("gpu:0", "gpu", power_w=watts, provenance="sampled")],
            interval_s=0.02,
            store=store_url,
        ) as px,
    ):
        run = run_bench(BenchOptions(url=px.url, concurrency=[1, 4], requests=8, max_tokens=10, warmup=1))
    # the person waiting sees each point's progress on stderr (log mode here: not a terminal)
    err = capsys.readouterr().err.splitlines()
    for c in (1, 4):
        assert any(ln.startswith(f"bench serve: concurrency {c}: requests (1/8, ") for ln in err), err
        assert any(ln.startswith(f"bench serve: concurrency {c}: 8/8 requests answered (") for ln in err), err
    res = run.result
    assert list(res) == ["kind", "version", "model", "engine", "hardware", "model_info", "points"]
    assert (res["kind"], res["version"], res["model"]) == ("greenlm.bench.serve", 1, "fake-model")
    assert set(res["hardware"]) == {"accelerator", "accelerator_count", "cpu", "cpu_threads"}
    assert res["hardware"]["accelerator_count"] == 1
    assert set(res["model_info"]) == {"total_params", "active_params", "weight_precision"}
    for p in res["points"]:
        assert set(p) == set(POINT_KEYS)
        for k, t in POINT_KEYS.items():
            assert isinstance(p[k], t), (k, p[k])
        assert p["requests"] == 8 and p["output_tokens"] == 80
        assert p["j_per_output_token"] == pytest.approx(p["energy_j"] / 80)
        assert p["j_per_request"] == pytest.approx(p["energy_j"] / 8)
        assert p["output_tokens_per_s"] == pytest.approx(80 / p["duration_s"])
        assert p["power_w"] == pytest.approx(watts, rel=0.02)  # the replayed GPU's power
        # the whole point was measured, and little more (the stats calls settle to the next sample)
        assert watts * p["duration_s"] * 0.98 <= p["energy_j"] <= watts * (p["duration_s"] + 0.25)
        assert p["itl_p50_s"] >= 0.003 * 0.9 and p["itl_p50_s"] <= p["itl_p95_s"]
        assert p["provenance"] == "sampled"
    one, four = res["points"]
    # the fake engine serves requests concurrently: four streams at once give more throughput, and
    # at one constant power each token then costs less in exactly that proportion
    assert four["output_tokens_per_s"] > 1.5 * one["output_tokens_per_s"]
    assert four["j_per_output_token"] < one["j_per_output_token"] / 1.5
    assert pareto_front(res["points"], "output_tokens_per_s", True) == [four]
    paths = write_report(run, tmp_path / "rep")
    assert [p.name for p in paths] == ["bench.json", "bench.md", "pareto.png"]
    assert json.loads(paths[0].read_text()) == res
    assert paths[2].read_bytes()[:4] == b"\x89PNG"
    text = table(res)
    assert all(len(line) <= 80 for line in text.splitlines()[1:-2])
    assert "e-0" not in text  # numbers for people: no scientific notation


def test_percentile_and_prompts(tmp_path):
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 95) == 5.0
    assert math.isnan(percentile([], 50))
    default = load_prompts(None)
    assert len(default) > 100 and all(m[0]["role"] == "user" for m in default)
    assert all(len(m[0]["content"].split()) <= 64 for m in default)  # cut to 60 words + the instruction
    f = tmp_path / "p.txt"
    f.write_text('plain line\n{"prompt": "from json"}\n{"messages": [{"role": "user", "content": "m"}]}\n\n')
    assert [m[0]["content"] for m in load_prompts(str(f))] == ["plain line", "from json", "m"]
    f.write_text('{"text": "no"}\n')
    with pytest.raises(ConfigError, match=":1: a JSON line needs 'prompt'"):
        load_prompts(str(f))
    with pytest.raises(ConfigError, match="cannot read"):
        load_prompts(str(tmp_path / "missing.txt"))
