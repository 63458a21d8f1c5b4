"""Monitoring deployed inference: a real uvicorn server on loopback serving MiniLM."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("prometheus_client")
pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from prometheus_client import CollectorRegistry  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from greenlm.integrations.monitor import (  # noqa: E402
    Monitor,
    add_tokens,
    monitor,
    sanitize_label,
)
from greenlm.meters.fake import ReplayMeter  # noqa: E402
from greenlm.store.runs import open_store  # noqa: E402

from ._serving import Served, embedding_app, load_minilm  # noqa: E402

N_REQUESTS = 48
CONCURRENCY = 8
TIME_LIMIT_S = 120.0


def _families(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        out.setdefault(fam.name, []).extend(fam.samples)
    return out


def test_served_minilm_conserves_energy_and_scrapes(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine
    try:
        tok, model = load_minilm()
        registry = CollectorRegistry()
        records = []
        mon = Monitor(
            model="minilm",
            registry=registry,
            interval_s=0.05,
            flush_interval_s=0.5,
            window_s=0.5,
            on_request=records.append,
            project="serving-test",
        )
        texts = ["energy per request", "a longer sentence about measuring the carbon of language models"]
        t_start = time.monotonic()
        with Served(embedding_app(tok, model, mon)) as srv:
            assert mon.running, "the app's start-up opened the deployment's run"
            with httpx.Client(base_url=srv.url, timeout=30) as client:

                def one(i: int) -> int:
                    r = client.post("/embed", json={"texts": texts[: 1 + i % 2]})
                    assert r.status_code == 200
                    return int(r.json()["tokens"])

                with ThreadPoolExecutor(CONCURRENCY) as pool:
                    sent_tokens = sum(pool.map(one, range(N_REQUESTS)))
                assert client.get("/items/42").status_code == 200
                assert client.get("/no/such/<script>").status_code == 404
                time.sleep(0.2)  # let the sampler settle the last requests
                scrape = client.get("/metrics")
            assert time.monotonic() - t_start < TIME_LIMIT_S
        # the app's shutdown closed and stored the run
        assert not mon.running
        assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
        fams = _families(scrape.text)
        run = next(r.to_dict() for r in open_store().list_runs(project="serving-test"))
    finally:
        torch.set_num_threads(threads)

    # --- every request got its energy, and the energies add up to the measured total
    assert len(records) == N_REQUESTS + 2
    assert all(r.complete for r in records)
    assert all(r.energy_j > 0 for r in records if r.route == "/embed")
    total_requests_j = sum(r.energy_j for r in records)
    assert total_requests_j + mon.idle_energy_j == pytest.approx(run["energy_j"], rel=1e-9)
    serving = run["metadata"]["serving"]
    assert serving["requests"] == N_REQUESTS + 2
    assert serving["requests_energy_j"] + serving["idle_energy_j"] == pytest.approx(run["energy_j"], rel=1e-9)
    assert run["metadata"]["kind"] == "serving"
    # overlapping requests share power: the busy part is most of the window under load
    assert total_requests_j > serving["idle_energy_j"] * 0.2
    # tokens reported by the endpoint, and energy per token
    embed = [r for r in records if r.route == "/embed"]
    assert sum(r.tokens for r in embed) == sent_tokens == serving["tokens"]
    assert all(r.energy_per_token_j == pytest.approx(r.energy_j / r.tokens) for r in embed)
    # rolling windows partition the run
    wins = serving["windows"]
    assert len(wins) >= 2
    assert sum(w["energy_j"] for w in wins) == pytest.approx(run["energy_j"], rel=1e-9)
    assert sum(w["requests"] for w in wins) == N_REQUESTS + 2

    # --- Prometheus: labels, histogram count, conservation in the counters
    energy = {
        (s.labels["model"], s.labels["route"]): s.value
        for s in fams["greenlm_energy_joules"]
        if s.name.endswith("_total")
    }
    assert ("minilm", "/embed") in energy and ("minilm", "/items/{item_id}") in energy
    assert ("minilm", "_unmatched") in energy, "raw paths never become labels"
    assert ("minilm", "_idle") in energy, "idle energy carries the configured model's label"
    assert {m for m, _ in energy} == {"minilm"}, energy
    hist_count = {
        s.labels["route"]: s.value for s in fams["greenlm_request_energy_joules"] if s.name.endswith("_count")
    }
    assert hist_count["/embed"] == N_REQUESTS
    tokens = {s.labels["route"]: s.value for s in fams["greenlm_tokens"] if s.name.endswith("_total")}
    assert tokens["/embed"] == sent_tokens
    assert {s.labels["device"] for s in fams["greenlm_power_watts"]} >= {"cpu", "ram"}
    # after shutdown, the counters in the registry add up to the stored run
    final = sum(
        s.value
        for m in registry.collect()
        if m.name == "greenlm_energy_joules"
        for s in m.samples
        if s.name.endswith("_total")
    )
    assert final == pytest.approx(run["energy_j"], rel=1e-9)


def test_overlap_rule_with_replayed_power() -> None:
    """Two requests overlapping half the time: the shared part is split, the rest is not."""
    mon = Monitor(registry=False, store=False, interval_s=0.02, meters=[ReplayMeter("gpu:0", "gpu", 100.0)])
    mon.start()
    a = mon.begin(route="a")
    time.sleep(0.2)
    b = mon.begin(route="b")
    time.sleep(0.2)
    mon.end(a)
    time.sleep(0.2)
    mon.end(b)
    result = mon.close()
    ea = next(r for r in mon.recent if r.route == "a").energy_j
    eb = next(r for r in mon.recent if r.route == "b").energy_j
    assert ea + eb + mon.idle_energy_j == pytest.approx(result.energy_j, rel=1e-9)
    # 100 W: a alone 0.2 s (20 J) + shared 0.2 s (10 J each) + b alone 0.2 s (20 J)
    assert ea == pytest.approx(30.0, rel=0.15)
    assert eb == pytest.approx(30.0, rel=0.15)
    assert result.metadata["serving"]["requests"] == 2


def test_wrapper_sync_and_async_count_tokens() -> None:
    mon = Monitor(
        registry=CollectorRegistry(), store=False, interval_s=0.02, meters=[ReplayMeter("gpu:0", "gpu", 50.0)]
    )

    @monitor(model="toy", tokens=len, monitor=mon)
    def generate(prompt: str) -> list[str]:
        time.sleep(0.05)
        return prompt.split()

    async def agenerate(prompt: str) -> str:
        await asyncio.sleep(0.05)
        add_tokens(3)
        return prompt

    wrapped = monitor(agenerate, route="chat", monitor=mon)
    assert generate("one two three four") == ["one", "two", "three", "four"]
    assert asyncio.run(wrapped("hi")) == "hi"
    assert generate.monitor is mon
    mon.close()
    by_route = {r.route: r for r in mon.recent}
    sync_route = "test_wrapper_sync_and_async_count_tokens._locals_.generate"
    assert by_route[sync_route].tokens == 4
    assert by_route["chat"].tokens == 3 and by_route["chat"].model == "_"
    assert sum(r.energy_j for r in mon.recent) + mon.idle_energy_j == pytest.approx(mon.tracker.result.energy_j)


def test_label_values_are_sanitised_and_bounded() -> None:
    evil = sanitize_label('x"} evil{a="1\n')
    assert evil == "x_}_evil{a__1_"
    assert not set(evil) & set('"= \n\\')
    assert len(sanitize_label("a" * 500)) == 64
    mon = Monitor(registry=CollectorRegistry(), store=False, meters=[ReplayMeter("gpu:0", "gpu", 1.0)], interval_s=0.02)
    for i in range(130):
        mon.end(mon.begin(model=f"m{i}"))
    mon.close()
    models = {r.model for r in mon.recent}
    assert len(models) == 101 and "_other" in models
