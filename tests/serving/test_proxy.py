"""The proxy on loopback against a small OpenAI-compatible engine process (fake_engine.py, a
replacement for vLLM-class engines), its energy from a replay meter (a stand-in GPU at a known
power), so every figure can be checked against a known answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("prometheus_client")
httpx = pytest.importorskip("httpx")

from greenlm.meters.fake import ReplayMeter  # noqa: E402
from greenlm.serving.proxy import measured_point_after  # noqa: E402
from greenlm.store import open_store  # noqa: E402

from ._helpers import FakeEngine, ProxyThread, free_port, metric_sum, promtool_check, read_sse  # noqa: E402

WATTS = 200.0


def proxy_for(upstream: str, store_url: str, **kw):
    kw.setdefault("model", "fake-model")
    return ProxyThread(
        upstream,
        meters=[ReplayMeter("gpu:0", "gpu", power_w=WATTS, provenance="sampled")],
        interval_s=0.05,
        store=store_url,
        location="DEU",
        project="serve-test",
        **kw,
    )


def energy_of(resp: httpx.Response, stream: bool) -> dict:
    if not stream:
        return resp.json()["greenlm"]
    chunks, _ = read_sse(resp.text.splitlines())
    ext = [c["greenlm"] for c in chunks if "greenlm" in c]
    assert len(ext) == 1, "exactly one chunk carries the energy"
    assert "greenlm" in chunks[-1], "and it is the last one"
    return ext[0]


def test_a_mixed_concurrent_load_conserves_the_measured_energy(store_url):
    with FakeEngine("--token-delay-ms", "4") as eng, proxy_for(eng.url, store_url) as px:
        client = httpx.Client(base_url=px.url, timeout=30)

        def one(i: int) -> dict:
            stream = i % 2 == 0
            if i % 3 == 0:
                body = {"model": "fake-model", "prompt": "The capital of France is", "max_tokens": 4 + i % 5}
                route = "/v1/completions"
            else:
                body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi " * i}], "max_tokens": 8}
                route = "/v1/chat/completions"
            body["stream"] = stream
            r = client.post(route, json=body)
            assert r.status_code == 200, r.text
            ext = energy_of(r, stream)
            if not stream:
                assert float(r.headers["x-greenlm-energy-j"]) == ext["energy_j"]
                assert "energy=sampled" in r.headers["x-greenlm-provenance"]
            return ext

        with ThreadPoolExecutor(8) as pool:
            exts = list(pool.map(one, range(32)))
        scrape = client.get("/metrics").text
        result = px.stop()

    assert all(e["energy_j"] > 0 and e["output_tokens"] > 0 for e in exts)
    assert all(e["energy_low_j"] <= e["energy_j"] <= e["energy_high_j"] for e in exts)
    streamed = [e for i, e in enumerate(exts) if i % 2 == 0]
    assert {e["method"] for e in streamed} == {"stream-timing"}
    s = result.metadata["serving"]
    assert result.metadata["kind"] == "serving" and result.status == "completed"
    assert s["requests"] == 32 and s["statuses"] == {"ok": 32}
    # what the responses carried plus idle is what the meter measured, to float rounding
    assert sum(e["energy_j"] for e in exts) + s["idle_energy_j"] == pytest.approx(result.energy_j, rel=1e-9)
    assert s["measured_energy_j"] == pytest.approx(result.energy_j, rel=1e-12)
    assert result.energy_j == pytest.approx(WATTS * result.duration_s, rel=1e-3)
    # the Prometheus counters add up too (everything settled at the scrape was counted)
    assert metric_sum(scrape, "greenlm_energy_joules_total") <= result.energy_j + 1e-9
    final = px.proxy.metrics.exposition()[0].decode()
    assert metric_sum(final, "greenlm_energy_joules_total") == pytest.approx(result.energy_j, rel=1e-9)
    assert metric_sum(final, "greenlm_tokens_total") == sum(e["output_tokens"] for e in exts)
    check = promtool_check(final)
    assert check.returncode == 0, check.stdout + check.stderr
    # stored: one serving run with the per-model summary
    stored = open_store(store_url).get_run(result.run_id).to_dict()
    assert stored["status"] == "completed"
    assert stored["metadata"]["serving"]["models"][0]["model"] == "fake-model"
    assert stored["metadata"]["serving"]["models"][0]["requests"] == 32


def test_the_openai_client_reads_every_response_and_the_extension_rides_along(store_url):
    openai = pytest.importorskip("openai")
    with FakeEngine("--token-delay-ms", "1") as eng, proxy_for(eng.url, store_url) as px:
        client = openai.OpenAI(base_url=px.url + "/v1", api_key="unused")
        r = client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "Hello"}], max_tokens=5
        )
        assert r.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4"
        assert r.usage.completion_tokens == 5
        assert r.model_extra["greenlm"]["energy_j"] > 0
        assert r.model_extra["greenlm"]["j_per_output_token"] == pytest.approx(r.model_extra["greenlm"]["energy_j"] / 5)
        text, ext = "", None
        for chunk in client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "Hello"}], max_tokens=6, stream=True
        ):
            for c in chunk.choices:
                text += c.delta.content or ""
            ext = (chunk.model_extra or {}).get("greenlm", ext)
        assert text == "".join(f"tok{i} " for i in range(6))
        assert ext is not None and ext["output_tokens"] == 6 and ext["method"] == "stream-timing"
        comp = client.completions.create(model="fake-model", prompt="Once", max_tokens=3, stream=True)
        assert "".join(c.choices[0].text for c in comp if c.choices) == "tok0 tok1 tok2 "
        # the engine's answers for other paths come through unchanged
        assert [m.id for m in client.models.list()] == ["fake-model"]


def test_a_client_that_disconnects_mid_stream_is_still_accounted(store_url):
    with FakeEngine("--token-delay-ms", "20") as eng, proxy_for(eng.url, store_url) as px:
        body = {
            "model": "fake-model",
            "messages": [{"role": "user", "content": "go"}],
            "max_tokens": 200,
            "stream": True,
        }
        with httpx.Client(base_url=px.url, timeout=30) as c:
            with c.stream("POST", "/v1/chat/completions", json=body) as r:
                seen = 0
                for line in r.iter_lines():
                    if line.startswith("data:"):
                        seen += 1
                    if seen >= 5:
                        break  # hang up after a few tokens (closing the connection)
        time.sleep(0.5)
        with httpx.Client(base_url=px.url, timeout=30) as c:  # a normal request afterwards
            ok = c.post("/v1/chat/completions", json={**body, "max_tokens": 3, "stream": False})
            assert ok.status_code == 200
        result = px.stop()
    s = result.metadata["serving"]
    assert s["statuses"] == {"disconnected": 1, "ok": 1}
    gone = next(m for m in s["routes"] if m["statuses"].get("disconnected"))
    assert gone["energy_j"] > 0 and 4 <= gone["output_tokens"] < 200
    assert s["requests_energy_j"] + s["idle_energy_j"] == pytest.approx(result.energy_j, rel=1e-9)


def test_an_engine_that_is_down_gets_a_clear_502(store_url):
    port = free_port()  # nothing listens there
    with proxy_for(f"http://127.0.0.1:{port}", store_url, engine_metrics_interval_s=0) as px:
        with httpx.Client(base_url=px.url, timeout=30) as c:
            r = c.post("/v1/chat/completions", json={"model": "m", "messages": []})
            models = c.get("/v1/models")
        result = px.stop()
    assert r.status_code == 502
    err = r.json()["error"]
    assert err["code"] == "upstream_unavailable"
    assert f"127.0.0.1:{port} is not answering" in err["message"] and "on that port" in err["message"]
    assert models.status_code == 502 and models.json()["error"]["code"] == "upstream_unavailable"
    assert result.metadata["serving"]["statuses"] == {"upstream-error": 1}


@pytest.mark.parametrize("mode", ["html", "nochoices"])
def test_an_upstream_that_is_not_an_openai_engine_is_named(store_url, mode):
    with FakeEngine("--mode", mode) as eng, proxy_for(eng.url, store_url) as px:
        with httpx.Client(base_url=px.url, timeout=30) as c:
            r = c.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 502
    err = r.json()["error"]
    assert err["code"] == "upstream_not_openai"
    assert "not an OpenAI response" in err["message"] and "--upstream" in err["message"]
    assert ("text/html" in err["message"]) == (mode == "html")


def test_bad_requests_get_clear_errors_and_engine_rejections_pass_through(store_url):
    with FakeEngine() as eng, proxy_for(eng.url, store_url) as px:
        with httpx.Client(base_url=px.url, timeout=30) as c:
            bad_json = c.post(
                "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
            )
            a_list = c.post("/v1/completions", json=[1, 2])
            bad_stream = c.post("/v1/chat/completions", json={"model": "m", "messages": [], "stream": "yes"})
            rejected = c.post("/v1/chat/completions", json={"model": "m"})  # the engine wants messages
        result = px.stop()
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"
    assert "not valid JSON" in bad_json.json()["error"]["message"]
    assert a_list.status_code == 400 and "takes a JSON object, got list" in a_list.json()["error"]["message"]
    assert bad_stream.status_code == 400 and '"stream" must be true or false' in bad_stream.json()["error"]["message"]
    assert rejected.status_code == 422 and rejected.json()["error"]["message"] == "messages is required"
    assert float(rejected.headers["x-greenlm-energy-j"]) >= 0
    assert result.metadata["serving"]["statuses"] == {"rejected": 1}  # the proxy's own 400s reach no engine


def test_an_engine_without_usage_in_its_stream_is_counted_by_chunks_and_keeps_done_last(store_url):
    with (
        FakeEngine("--no-usage-in-stream", "--done", "--token-delay-ms", "1") as eng,
        proxy_for(eng.url, store_url) as px,
    ):
        with httpx.Client(base_url=px.url, timeout=30) as c:
            body = {"model": "fake-model", "messages": [{"role": "user", "content": "x"}], "max_tokens": 7}
            r = c.post("/v1/chat/completions", json={**body, "stream": True})
    lines = [ln for ln in r.text.splitlines() if ln.startswith("data:")]
    assert lines[-1] == "data: [DONE]"
    chunks, done = read_sse(lines)
    assert done and "greenlm" in chunks[-1] and chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["greenlm"]["output_tokens"] == 7


def test_vllm_style_engine_metrics_are_recorded_beside_the_energy(store_url):
    with (
        FakeEngine("--vllm-metrics", "--token-delay-ms", "10") as eng,
        proxy_for(eng.url, store_url, engine_metrics_interval_s=0.05) as px,
    ):
        with httpx.Client(base_url=px.url, timeout=30) as c:
            body = {"model": "fake-model", "messages": [{"role": "user", "content": "x"}], "max_tokens": 30}
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda _: c.post("/v1/chat/completions", json=body), range(8)))
            scrape = c.get("/metrics").text
        result = px.stop()
    em = result.metadata["serving"]["engine_metrics"]
    assert em["source"] == "vllm /metrics" and em["samples"] >= 3
    assert 1 <= em["max"]["requests_running"] <= 4
    assert 0 < em["max"]["kv_cache_usage"] <= 0.25
    assert "greenlm_engine_requests_running" in scrape and "greenlm_engine_kv_cache_usage_ratio" in scrape


def test_idle_energy_is_labelled_with_the_configured_model_name(store_url):
    with FakeEngine() as eng, proxy_for(eng.url, store_url, model="smol-135m") as px:
        time.sleep(0.3)
        with httpx.Client(base_url=px.url, timeout=30) as c:
            text = c.get("/metrics").text
            stats = c.get("/greenlm/stats").json()
    assert metric_sum(text, "greenlm_energy_joules_total", model="smol-135m", route="_idle") > 0
    assert 'model="_"' not in text
    assert stats["kind"] == "greenlm.serve.stats" and stats["model"] == "smol-135m"
    assert stats["idle_energy_j"] == pytest.approx(stats["measured_energy_j"], rel=1e-9)
    assert promtool_check(text).returncode == 0


def test_the_adapter_uses_sample_now_when_the_tracker_has_it_else_waits_for_a_sample():
    class Now:
        def sample_now(self):
            return (5.0, 42.0)

    async def never(t):
        raise AssertionError("must not wait when sample_now exists")

    async def later(t):
        await asyncio.sleep(0.01)
        return (t + 0.05, 7.0)

    assert asyncio.run(measured_point_after(Now(), 1.0, never)) == (5.0, 42.0)
    assert asyncio.run(measured_point_after(object(), 1.0, later)) == (1.05, 7.0)


def test_the_stats_endpoint_matches_the_metrics_and_carries_the_hardware(store_url):
    with FakeEngine("--token-delay-ms", "1") as eng, proxy_for(eng.url, store_url) as px:
        with httpx.Client(base_url=px.url, timeout=30) as c:
            c.post("/v1/chat/completions", json={"model": "fake-model", "messages": [], "max_tokens": 3})
            st = c.get("/greenlm/stats").json()
            text = c.get("/metrics").text
            later = c.get("/greenlm/stats").json()
    assert st["requests"] == 1 and st["output_tokens"] == 3 and st["provenance"] == "sampled"
    assert st["hardware"]["accelerator_count"] == 1 and st["hardware"]["cpu_threads"] >= 1
    assert st["requests_energy_j"] + st["idle_energy_j"] == pytest.approx(st["measured_energy_j"], rel=1e-9)
    # the counters, read between two stats calls, lie between what each had measured (the
    # sampler keeps measuring idle energy between the calls)
    published = metric_sum(text, "greenlm_energy_joules_total")
    assert st["measured_energy_j"] * (1 - 1e-9) <= published <= later["measured_energy_j"] * (1 + 1e-9)
    assert json.dumps(st)  # plain JSON


def test_the_store_gets_rolling_windows_while_serving(store_url):
    with FakeEngine("--token-delay-ms", "1") as eng, proxy_for(eng.url, store_url, window_s=0.3) as px:
        with httpx.Client(base_url=px.url, timeout=30) as c:
            for _ in range(3):
                c.post("/v1/chat/completions", json={"model": "fake-model", "messages": [], "max_tokens": 4})
                time.sleep(0.35)
        mid = open_store(store_url).get_run(px.proxy.tracker.run_id).to_dict()  # saved while serving
        result = px.stop()
    assert mid["status"] == "running" and mid["metadata"]["serving"]["windows"]
    w = result.metadata["serving"]["windows"]
    assert len(w) >= 3 and sum(x["requests"] for x in w) == 3
    assert sum(x["energy_j"] for x in w) == pytest.approx(result.energy_j, rel=1e-9)
    assert all(x["models"].get("fake-model", {"requests": 0})["requests"] <= 1 for x in w)


def _relayed(events: list[bytes], shortcut: bool, monkeypatch) -> tuple[Any, ...]:
    """Each event's token count, the bytes forwarded, the chunk held back as the possible last,
    what an added last chunk would name, and how many events were parsed."""
    from greenlm.serving import proxy

    parsed = []
    loads = json.loads
    with monkeypatch.context() as m:
        if not shortcut:
            m.setattr(proxy, "_content_shape", lambda data, obj, choices: None)
        m.setattr(proxy.json, "loads", lambda d: parsed.append(d) or loads(d))
        sse = proxy._SseState()
        counts, out = [], []
        for e in events:
            before = sse.new_tokens
            proxy.ServingProxy._on_event(e, sse, out)
            counts.append(sse.new_tokens - before)
        last = {k: (sse.last or {}).get(k) for k in ("id", "object", "created", "model")}  # for an added last chunk
        return counts, out, sse.held[1] if sse.held else None, last, len(parsed)


def test_content_chunks_read_without_parsing_count_exactly_as_parsed_ones(monkeypatch):
    # the proxy reads a content chunk shaped like the stream's first one (same bytes but the
    # text) without parsing it; whatever the text, it must count and forward what a parse would
    def chunk(text, finish=None, cid="c1", extra=None, **dumps):
        obj = {"id": cid, "object": "chat.completion.chunk", "created": 1, "model": "m"}
        obj["choices"] = [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]
        obj.update(extra or {})
        return b"data: " + json.dumps(obj, **dumps).encode() + b"\n\n"

    raw = b'data: {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": '
    events = [
        chunk("", extra={}),  # a role-only style chunk: no text
        chunk("Hello"),  # the shape
        chunk(" world"),
        chunk('say "hi"'),  # quotes: escaped in the chunk
        chunk("two\nlines"),  # an escape
        chunk("caf\u00e9", ensure_ascii=False),  # raw UTF-8
        chunk("caf\u00e9"),  # \u escape
        raw + b'[{"index": 0, "delta": {"content": "a\x01b"}, "finish_reason": null}]}\n\n',  # not JSON
        raw + b'[{"index": 0, "delta": {"content": "\xff\xfe"}, "finish_reason": null}]}\n\n',  # not UTF-8
        chunk("x", cid="c2"),  # another id: another shape
        chunk("y", separators=(",", ":")),  # compact: another shape
        chunk(""),  # empty text: no token
        chunk("z", extra={"usage": {"prompt_tokens": 3, "completion_tokens": 9}}),  # usage: a tail
        chunk(" more"),
        chunk("", finish="stop"),  # the last
    ]
    counts, out, held, _, parsed = _relayed(events, True, monkeypatch)
    assert (counts, out, held) == _relayed(events, False, monkeypatch)[:3]
    # a stream that ends without a last chunk, after another id: the added chunk names the same
    for seq in (events[:3], events[:14], [events[1], events[9], events[2]]):
        fast = _relayed(seq, True, monkeypatch)
        assert fast[:4] == _relayed(seq, False, monkeypatch)[:4] and fast[3]["id"] == "c1"
    assert counts == [0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0]
    assert out == events[:-1] and held == events[-1]  # every chunk in order, the last held back
    assert parsed == len(events) - 3  # " world", raw "café" and " more" were read without a parse
