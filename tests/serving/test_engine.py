"""Where the engine listens, starting it as a child that dies with greenlm, waiting for it."""

from __future__ import annotations

import http.server
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from greenlm.errors import ConfigError
from greenlm.serving.engine import Engine, EngineError, engine_name, infer_upstream, probe, wait_until_up

from ._helpers import free_port


@pytest.mark.parametrize(
    ("cmd", "url", "source"),
    [
        (["transformers", "serve", "./m", "--port", "8001"], "http://127.0.0.1:8001", "engine --port"),
        (["vllm", "serve", "m", "--port=9000", "--host", "0.0.0.0"], "http://127.0.0.1:9000", "engine --port"),
        (["python", "-m", "llama_cpp.server", "--model", "m.gguf", "--host", "10.1.2.3"], "http://10.1.2.3:8000", None),
        (["/opt/bin/llama-server", "-m", "m.gguf"], "http://127.0.0.1:8080", "default port of llama-server"),
        (["python", "-m", "sglang.launch_server", "--model-path", "m"], "http://127.0.0.1:30000", None),
        (["transformers", "serve", "m", "--host", "::1", "--port", "7000"], "http://[::1]:7000", "engine --port"),
    ],
)
def test_the_upstream_is_read_from_the_engine_command(cmd, url, source):
    up = infer_upstream(cmd)
    assert up.url == url
    if source:
        assert up.source == source


def test_an_explicit_upstream_wins_and_bad_ones_say_what_is_expected():
    assert infer_upstream(["anything"], "http://127.0.0.1:8001/").url == "http://127.0.0.1:8001"
    with pytest.raises(ConfigError, match=r"http\(s\) URL like http://127\.0\.0\.1:8001"):
        infer_upstream([], "127.0.0.1:8001")
    with pytest.raises(ConfigError, match="without a path"):
        infer_upstream([], "http://127.0.0.1:8001/v1")
    with pytest.raises(ConfigError, match="give the engine a --port"):
        infer_upstream(["./my-server", "--model", "x"])
    with pytest.raises(ConfigError, match="not a number"):
        infer_upstream(["vllm", "serve", "m", "--port", "eighty"])


def test_engine_names():
    assert engine_name([sys.executable, "-m", "transformers.cli.transformers", "serve", "m"]) == "transformers serve"
    assert engine_name(["vllm", "serve", "m"]) == "vllm serve"
    assert engine_name(["python", "-m", "llama_cpp.server"]) == "llama_cpp.server"
    assert engine_name(["./my-server"]) is None


def test_the_engine_dies_with_greenlm_even_when_greenlm_is_killed(tmp_path):
    """PR_SET_PDEATHSIG: a greenlm killed with SIGKILL (no chance to clean up) takes the engine along."""
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(tmp_path)!r})
        from greenlm.serving.engine import Engine
        e = Engine.start([sys.executable, "-c", "import time; time.sleep(120)"])
        print(e.pid, flush=True)
        time.sleep(120)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    import psutil

    assert psutil.pid_exists(child)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if psutil.Process(child).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    else:
        psutil.Process(child).kill()
        pytest.fail("the engine outlived greenlm")


def test_stop_sends_sigterm_then_reports_how_it_ended():
    e = Engine.start([sys.executable, "-c", "import time; time.sleep(120)"])
    assert e.poll() is None
    e.stop(grace_s=10)
    assert e.describe_exit() == "killed by SIGTERM"
    e2 = Engine.start([sys.executable, "-c", "import sys; sys.exit(3)"])
    deadline = time.monotonic() + 30
    while e2.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert e2.poll() == 3 and e2.describe_exit() == "exited with code 3"
    assert e2.cpu_time_s is not None and e2.cpu_time_s > 0  # from wait4: the child's exact CPU time


def test_an_engine_that_exits_before_answering_is_reported_with_its_exit():
    e = Engine.start([sys.executable, "-c", "import sys; sys.exit(7)"])
    with pytest.raises(EngineError, match="exited with code 7 before answering"):
        wait_until_up(f"http://127.0.0.1:{free_port()}", e, timeout_s=30)


def test_nothing_listening_times_out_with_advice():
    with pytest.raises(EngineError, match=r"did not answer GET /v1/models within 0\.5 s"):
        wait_until_up(f"http://127.0.0.1:{free_port()}", None, timeout_s=0.5, poll_s=0.1)


def test_a_server_that_is_not_an_openai_engine_is_refused_with_what_it_said():
    class Html(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            code = 404 if self.path == "/v1/models" and self.server.mode == "404" else 200
            body = b"<html>hello</html>"
            self.send_response(code)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    for mode, expect in (("404", "returned 404"), ("200", "text/html")):
        srv = http.server.HTTPServer(("127.0.0.1", 0), Html)
        srv.mode = mode
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        try:
            with pytest.raises(EngineError, match="not as an OpenAI-compatible server") as ei:
                probe(f"http://127.0.0.1:{srv.server_address[1]}")
            assert expect in str(ei.value)
        finally:
            srv.shutdown()


def test_attach_to_a_missing_process_is_refused():
    with pytest.raises(ConfigError, match="no such process"):
        Engine.attach(2**22 + 12345)
