"""Splitting a serving engine's measured energy among the requests it served (pure: no threads, no I/O).

The proxy sees, for every request, when it arrived and ended and, for a streamed response,
when each output token came out; the engine's usage counts give the prompt and output
tokens. The tracker gives the engine's cumulative IT energy ``E(t)`` at its samples (and, with
``sample_now``, at the end of any request). This module turns the two into per-request
energies that add up to what was measured.

The rule
--------
Time is cut at every measured point (a sample) and at every request's arrival and end; the energy of a
piece between two cuts, ``E(b) - E(a)`` (linear between measured points), goes to the
requests in flight during the piece, in proportion to the *work* each did in it, in
decode-token equivalents:

* a streamed output token counts 1 in the piece where it arrived (the chunk that carried
  it); the first one also carries its prompt's prefill, ``prefill_weight x prompt tokens``
  (the prompt is prefilled in the pass that produces the first token);
* a request without stream timing (a non-streamed response) is taken to progress at the
  mean rate of the streamed requests that produced tokens in the same piece (their tokens
  per second in flight), times its own time in flight in the piece;
* when no request in flight did measurable work in a piece (all waiting for a first
  token, or none streams), the piece is split by time in flight, equally (the in-process
  monitor's rule);
* a piece with no request in flight is *idle* energy.

So ``sum(request energies) + idle == E(last cut) - E(first)`` exactly (up to float
rounding), every piece is settled once, and a request's energy is final at the first
measured point at or after its end. Events stamped before the last cut (a token that
arrived while the sampler was settling) count in the next piece.

``DEFAULT_PREFILL_WEIGHT`` is fitted on SmolLM2-135M on a CPU (see docs/serving.md);
prefill is cheaper per token than decoding (one batched pass over the prompt instead of one
pass per token), so the weight is well below 1. Pass your own for other hardware.
"""

from __future__ import annotations

import bisect
import collections
import math
from dataclasses import dataclass
from typing import Literal

from greenlm.errors import ConfigError

#: Decode-token equivalents of one prompt token (prefill), fitted for SmolLM2-135M on CPU.
DEFAULT_PREFILL_WEIGHT = 0.065

Method = Literal["stream-timing", "neighbour-rate", "time-share"]
Status = Literal["ok", "disconnected", "rejected", "upstream-error", "cut"]


@dataclass(frozen=True)
class RequestEnergy:
    """The energy attributed to one finished request (all times monotonic seconds)."""

    request_id: str
    model: str
    route: str
    stream: bool
    started: float
    ended: float
    energy_j: float
    prompt_tokens: int
    output_tokens: int
    first_token: float | None
    method: Method
    status: Status

    @property
    def duration_s(self) -> float:
        return self.ended - self.started

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.started

    @property
    def j_per_output_token(self) -> float | None:
        return self.energy_j / self.output_tokens if self.output_tokens else None


class _Live:
    """A request not yet settled (mutable; owned by its :class:`Attribution`)."""

    __slots__ = (
        "begun",
        "ended",
        "energy_j",
        "events",
        "first_token",
        "model",
        "output_tokens",
        "prompt_tokens",
        "rated",
        "rid",
        "route",
        "status",
        "stream",
        "timed",
        "usage_output",
        "usage_prompt",
    )

    def __init__(self, rid: str, t: float, model: str, route: str, stream: bool, prompt_tokens: int) -> None:
        self.rid, self.begun, self.model, self.route, self.stream = rid, t, model, route, stream
        self.prompt_tokens = max(0, int(prompt_tokens))
        self.ended: float | None = None
        self.energy_j = 0.0
        self.events: collections.deque[tuple[float, float, int]] = collections.deque()  # (t, work, tokens)
        self.first_token: float | None = None
        self.output_tokens = 0
        self.usage_prompt: int | None = None
        self.usage_output: int | None = None
        self.status: Status = "ok"
        self.timed = False  # at least one piece was split by its own stream timing
        self.rated = False  # at least one piece was split at its streamed neighbours' rate


class Attribution:
    """Per-request energy from request timing and cumulative measured energy.

    Feed it, in any interleaving: :meth:`begin`, :meth:`tokens`, :meth:`usage` and
    :meth:`end` as a request progresses, and :meth:`advance` with each measured point
    ``(t, E(t))``; :meth:`advance` returns the requests whose energy became final.
    ``t0`` / ``e0``: where the measurement starts (the tracker's window).
    """

    def __init__(self, t0: float, e0: float = 0.0, *, prefill_weight: float = DEFAULT_PREFILL_WEIGHT) -> None:
        if not (prefill_weight >= 0.0) or prefill_weight == float("inf"):
            raise ConfigError(f"prefill_weight must be a finite number >= 0, got {prefill_weight!r}.")
        self.prefill_weight = float(prefill_weight)
        self.t0 = self.cursor = float(t0)
        self.e0 = self.cursor_e = float(e0)
        self._live: dict[str, _Live] = {}
        self._ends: list[tuple[float, str]] = []  # sorted end times of unsettled requests
        self._begins: list[float] = []  # sorted arrival times not yet passed by a settled piece
        self.requests_energy_j = 0.0
        self.idle_energy_j = 0.0
        self.time_share_energy_j = 0.0  # energy split by time because no work was seen

    # ------------------------------------------------------------------ requests
    def begin(
        self, rid: str, t: float, *, model: str = "", route: str = "", stream: bool = False, prompt_tokens: int = 0
    ) -> None:
        """Request ``rid`` arrived at ``t``; ``prompt_tokens`` is an estimate until :meth:`usage`."""
        if rid in self._live:
            raise ValueError(f"request {rid!r} already begun")
        r = self._live[rid] = _Live(rid, max(t, self.t0), model, route, stream, prompt_tokens)
        if r.begun > self.cursor:
            bisect.insort(self._begins, r.begun)

    def tokens(self, rid: str, t: float, n: int = 1) -> None:
        """``n`` output tokens of ``rid`` came out at ``t`` (one streamed chunk)."""
        r = self._live.get(rid)
        if r is None or n <= 0 or r.ended is not None:
            return
        work = float(n)
        if r.first_token is None:
            r.first_token = t
            work += self.prefill_weight * r.prompt_tokens
        r.output_tokens += n
        r.events.append((t, work, n))

    def usage(self, rid: str, prompt_tokens: int | None, output_tokens: int | None) -> None:
        """The engine's own counts for ``rid`` (they replace the estimates in the result)."""
        r = self._live.get(rid)
        if r is None:
            return
        if prompt_tokens is not None:
            r.usage_prompt = max(0, int(prompt_tokens))
        if output_tokens is not None:
            r.usage_output = max(0, int(output_tokens))

    def end(self, rid: str, t: float, status: Status = "ok") -> None:
        """Request ``rid`` ended at ``t`` (response complete, client gone, or upstream failed)."""
        r = self._live.get(rid)
        if r is None or r.ended is not None:
            return
        r.ended = max(t, r.begun)
        r.status = status
        bisect.insort(self._ends, (r.ended, rid))

    @property
    def in_flight(self) -> int:
        """Requests begun and not yet settled."""
        return len(self._live)

    @property
    def in_flight_energy_j(self) -> float:
        """Energy already given to requests that are not final yet."""
        return sum(r.energy_j for r in self._live.values())

    @property
    def measured_energy_j(self) -> float:
        """Energy settled so far: requests (final and in flight) plus idle."""
        return self.cursor_e - self.e0

    # ------------------------------------------------------------------ measured points
    def advance(self, t: float, e: float) -> list[RequestEnergy]:
        """The cumulative energy was ``e`` at ``t``: settle every piece up to ``t``.

        Points at or before the last one are ignored (already covered). Returns the
        requests that ended at or before ``t``, now final.
        """
        if t <= self.cursor:
            return []
        e = max(e, self.cursor_e)  # cumulative energy never decreases
        a, ea = self.cursor, self.cursor_e
        slope = (e - ea) / (t - a)
        done: list[RequestEnergy] = []
        while True:
            while self._begins and self._begins[0] <= a:
                self._begins.pop(0)
            b = t
            if self._ends and self._ends[0][0] < b:
                b = self._ends[0][0]
            if self._begins and self._begins[0] < b:
                b = self._begins[0]
            eb = e if b >= t else ea + slope * (b - a)
            if b > a:
                self._settle(a, b, eb - ea)
            a, ea = b, eb
            while self._ends and self._ends[0][0] <= a:
                _, rid = self._ends.pop(0)
                done.append(self._final(self._live.pop(rid)))
            if a >= t:
                break
        self.cursor, self.cursor_e = t, e
        return done

    def close(self, t: float, e: float) -> list[RequestEnergy]:
        """Settle up to ``t`` and cut every request still in flight there (status ``cut``)."""
        done = self.advance(t, e)
        t_cut = max(t, self.cursor)
        for rid in list(self._live):
            r = self._live.pop(rid)
            if r.ended is None:
                r.ended, r.status = max(t_cut, r.begun), "cut"
            done.append(self._final(r))
        self._ends.clear()
        return done

    # ------------------------------------------------------------------ the split
    def _settle(self, a: float, b: float, energy_j: float) -> None:
        """Give the energy of the piece ``(a, b]`` to the requests in flight in it."""
        active = [r for r in self._live.values() if r.begun < b and (r.ended is None or r.ended > a)]
        if not active:
            self.idle_energy_j += energy_j
            return
        work: list[float] = []
        overlap: list[float] = []
        timed_tokens = 0
        timed_time = 0.0
        for r in active:
            o = min(b, r.ended if r.ended is not None else b) - max(a, r.begun)
            overlap.append(max(o, 0.0))
            w = 0.0
            n = 0
            ev = r.events
            while ev and ev[0][0] <= b:
                _, dw, dn = ev.popleft()
                w += dw
                n += dn
            work.append(w)
            if n:
                timed_tokens += n
                timed_time += max(o, 0.0)
        if timed_tokens and timed_time > 0:
            for i, r in enumerate(active):
                if not r.stream:
                    # the streamed requests' rate times this one's time in flight, as a ratio of
                    # times first: a piece a few ulps long must not overflow the rate to inf
                    work[i] = timed_tokens * (overlap[i] / timed_time)
        total = sum(work)
        if 0 < total < math.inf:
            for r, w in zip(active, work):
                if w > 0:
                    r.energy_j += energy_j * w / total
                    if r.stream:
                        r.timed = True
                    else:
                        r.rated = True
        else:
            span = sum(overlap)
            self.time_share_energy_j += energy_j
            if span > 0:
                for r, o in zip(active, overlap):
                    r.energy_j += energy_j * o / span
            else:  # requests that begin and end at one instant: share equally
                for r in active:
                    r.energy_j += energy_j / len(active)
        self.requests_energy_j += energy_j

    def _final(self, r: _Live) -> RequestEnergy:
        assert r.ended is not None
        return RequestEnergy(
            request_id=r.rid,
            model=r.model,
            route=r.route,
            stream=r.stream,
            started=r.begun,
            ended=r.ended,
            energy_j=r.energy_j,
            prompt_tokens=r.usage_prompt if r.usage_prompt is not None else r.prompt_tokens,
            output_tokens=r.usage_output if r.usage_output is not None else r.output_tokens,
            first_token=r.first_token,
            method="stream-timing" if r.timed else "neighbour-rate" if r.rated else "time-share",
            status=r.status,
        )
