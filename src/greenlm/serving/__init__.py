"""Energy per request and per token of a real inference server, with no change to the server.

``greenlm serve -- ENGINE COMMAND`` starts an OpenAI-compatible engine (``transformers
serve``, ``vllm serve``, ``python -m llama_cpp.server``, ...) as a child, measures its process
tree and fronts it with a proxy that gives every response its energy
(:mod:`greenlm.serving.proxy`); the split among concurrent requests is
:mod:`greenlm.serving.attribution` (pure). ``greenlm bench serve`` sweeps concurrency
against such a proxy and reports energy per token against throughput and latency
(:mod:`greenlm.serving.bench`). Needs the ``serve`` extra (aiohttp, prometheus-client).
"""

from __future__ import annotations

from greenlm.serving.attribution import DEFAULT_PREFILL_WEIGHT, Attribution, RequestEnergy

__all__ = ["DEFAULT_PREFILL_WEIGHT", "Attribution", "RequestEnergy"]
