"""The split of measured energy among requests (pure: no server, no meter)."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from greenlm.errors import ConfigError
from greenlm.serving.attribution import Attribution


def power(w: float):
    """Cumulative energy of a constant ``w`` watts."""
    return lambda t: w * t


def test_a_request_alone_gets_its_lifetime_and_the_rest_is_idle():
    a = Attribution(0.0, prefill_weight=0.0)
    e = power(100.0)
    a.begin("r", 1.0, stream=True)
    a.tokens("r", 1.5)
    a.tokens("r", 2.0)
    a.end("r", 2.5)
    done = a.advance(3.0, e(3.0))
    assert [r.request_id for r in done] == ["r"]
    assert done[0].energy_j == pytest.approx(150.0)  # 1.0 s to 2.5 s at 100 W
    assert a.idle_energy_j == pytest.approx(150.0)
    assert done[0].output_tokens == 2 and done[0].method == "stream-timing"
    assert done[0].ttft_s == pytest.approx(0.5) and done[0].j_per_output_token == pytest.approx(75.0)


def test_concurrent_streams_share_a_piece_by_the_tokens_each_produced_in_it():
    a = Attribution(0.0, prefill_weight=0.0)
    a.begin("fast", 0.0, stream=True)
    a.begin("slow", 0.0, stream=True)
    for t in (0.2, 0.4, 0.6):
        a.tokens("fast", t)
    a.tokens("slow", 0.5)
    a.end("fast", 1.0)
    a.end("slow", 1.0)
    done = {r.request_id: r for r in a.advance(1.0, 40.0)}
    assert done["fast"].energy_j == pytest.approx(30.0)
    assert done["slow"].energy_j == pytest.approx(10.0)


def test_the_first_token_carries_the_prompts_prefill():
    a = Attribution(0.0, prefill_weight=0.1)
    a.begin("long-prompt", 0.0, stream=True, prompt_tokens=100)  # first token: 1 + 0.1 x 100 = 11
    a.begin("short-prompt", 0.0, stream=True, prompt_tokens=0)
    a.tokens("long-prompt", 0.5)
    a.tokens("short-prompt", 0.5)
    a.end("long-prompt", 1.0)
    a.end("short-prompt", 1.0)
    done = {r.request_id: r for r in a.advance(1.0, 12.0)}
    assert done["long-prompt"].energy_j == pytest.approx(11.0)
    assert done["short-prompt"].energy_j == pytest.approx(1.0)


def test_a_request_waiting_for_its_first_token_gets_nothing_while_another_streams():
    # a sequential engine: b waits in the queue while a decodes
    a = Attribution(0.0, prefill_weight=0.0)
    a.begin("a", 0.0, stream=True)
    a.begin("b", 0.0, stream=True)
    for t in (0.25, 0.5, 0.75, 1.0):
        a.tokens("a", t)
    a.end("a", 1.0)
    assert a.advance(1.0, 10.0)[0].energy_j == pytest.approx(10.0)
    a.tokens("b", 1.5)
    a.end("b", 2.0)
    (b,) = a.advance(2.0, 20.0)
    assert b.energy_j == pytest.approx(10.0)


def test_a_non_streamed_request_progresses_at_its_streamed_neighbours_rate():
    a = Attribution(0.0, prefill_weight=0.0)
    a.begin("s", 0.0, stream=True)
    a.begin("n", 0.0, stream=False)
    for i in range(10):  # 10 tokens/s
        a.tokens("s", 0.1 * (i + 1))
    a.end("s", 1.0)
    a.end("n", 1.0)
    done = {r.request_id: r for r in a.advance(1.0, 20.0)}
    assert done["n"].energy_j == pytest.approx(10.0)  # 10 tok/s x 1 s of work, like s's 10 tokens
    assert done["s"].energy_j == pytest.approx(10.0)
    assert done["n"].method == "neighbour-rate"


def test_without_any_stream_timing_the_split_is_by_time_in_flight():
    a = Attribution(0.0)
    a.begin("x", 0.0)
    a.begin("y", 0.5)
    a.end("x", 1.0)
    a.end("y", 1.0)
    done = {r.request_id: r for r in a.advance(1.0, 30.0)}
    assert done["x"].energy_j == pytest.approx(22.5)  # at 30 W: alone 0-0.5 s (15 J), half of 0.5-1 s (7.5 J)
    assert done["y"].energy_j == pytest.approx(7.5)
    assert done["x"].method == done["y"].method == "time-share"
    assert a.time_share_energy_j == pytest.approx(30.0)


def test_a_request_is_final_at_the_first_point_past_its_end_with_energy_interpolated_there():
    a = Attribution(0.0)
    a.begin("r", 0.0)
    a.end("r", 0.3)
    assert a.advance(0.2, 2.0) == []  # not final before its end
    (r,) = a.advance(0.5, 5.0)  # 10 W: 3 J up to 0.3 s, the rest idle
    assert r.energy_j == pytest.approx(3.0)
    assert a.idle_energy_j == pytest.approx(2.0)


def test_a_token_stamped_before_the_last_point_counts_in_the_next_piece():
    a = Attribution(0.0, prefill_weight=0.0)
    a.begin("a", 0.0, stream=True)
    a.begin("b", 0.0, stream=True)
    a.tokens("a", 0.1)
    a.tokens("b", 0.1)
    a.advance(1.0, 10.0)  # 5 J each
    a.tokens("a", 0.9)  # arrived late: stamped before the point already settled
    a.end("a", 1.5)
    a.end("b", 1.5)
    done = {r.request_id: r for r in a.advance(1.5, 15.0)}
    assert done["a"].energy_j == pytest.approx(10.0)
    assert done["b"].energy_j == pytest.approx(5.0)


def test_close_cuts_requests_in_flight_and_keeps_their_energy():
    a = Attribution(0.0)
    a.begin("r", 0.0, stream=True)
    (r,) = a.close(2.0, 8.0)
    assert r.status == "cut" and r.energy_j == pytest.approx(8.0) and r.ended == 2.0


def test_usage_counts_replace_the_estimates():
    a = Attribution(0.0)
    a.begin("r", 0.0, stream=True, prompt_tokens=7)
    a.tokens("r", 0.1)
    a.usage("r", 36, 8)
    a.end("r", 0.2)
    (r,) = a.advance(0.2, 1.0)
    assert (r.prompt_tokens, r.output_tokens) == (36, 8)


def test_bad_prefill_weight_is_refused():
    with pytest.raises(ConfigError, match="prefill_weight"):
        Attribution(0.0, prefill_weight=-1.0)
    with pytest.raises(ConfigError, match="prefill_weight"):
        Attribution(0.0, prefill_weight=float("nan"))


events = st.lists(
    st.tuples(
        st.floats(0.0, 10.0),  # begin
        st.floats(0.0, 5.0),  # duration
        st.booleans(),  # stream
        st.lists(st.floats(0.0, 1.0), max_size=8),  # token positions within the request
        st.integers(0, 2000),  # prompt tokens
    ),
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(events, st.lists(st.floats(0.01, 16.0), min_size=1, max_size=30), st.floats(0.0, 2.0))
# found by hypothesis: a request a few ulps long overflowed its neighbours' rate to inf (a NaN energy)
@example(reqs=[(0.0, 5e-324, False, [0.0], 0)], points=[1.0], weight=0.0)
def test_request_energies_plus_idle_always_equal_the_measured_energy(reqs, points, weight):
    """Any interleaving of requests, tokens and measured points conserves energy."""
    a = Attribution(0.0, prefill_weight=weight)
    calls = []
    for i, (t0, d, stream, toks, prompt) in enumerate(reqs):
        calls.append((t0, 0, ("begin", str(i), stream, prompt)))
        for x in sorted(toks):
            calls.append((t0 + x * d, 1, ("tok", str(i))))
        calls.append((t0 + d, 2, ("end", str(i))))
    for p in points:
        calls.append((p, 3, ("point",)))
    calls.sort(key=lambda c: (c[0], c[1]))
    final = []
    e = power(37.0)
    for t, _, call in calls:
        if call[0] == "begin":
            a.begin(call[1], t, stream=call[2], prompt_tokens=call[3])
        elif call[0] == "tok":
            a.tokens(call[1], t)
        elif call[0] == "end":
            a.end(call[1], t)
        else:
            final += a.advance(t, e(t))
    t_end = 16.0
    final += a.close(t_end, e(t_end))
    assert len(final) == len(reqs)
    assert all(r.energy_j >= -1e-12 for r in final)
    total = sum(r.energy_j for r in final) + a.idle_energy_j
    assert total == pytest.approx(e(t_end), rel=1e-9, abs=1e-9)
    ended_before = [r for r in final if r.status == "ok"]
    assert all(r.ended <= t_end for r in ended_before)
