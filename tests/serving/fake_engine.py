"""A small OpenAI-compatible engine (a replacement for vLLM and friends in tests and benchmarks).

Run as a process: ``python fake_engine.py --port 8001 [--token-delay-ms 5] [--burn]
[--vllm-metrics] [--mode openai|html|nochoices] [--exit-after-requests N] [--no-usage-in-stream]
[--done]``. It speaks the parts of the OpenAI API the proxy relays (``/v1/models``,
``/v1/chat/completions``, ``/v1/completions``, streaming and not), produces exactly
``max_tokens`` tokens (default 16), one per ``--token-delay-ms``, and with ``--burn`` spends
that time on the CPU instead of sleeping (so a CPU meter sees work in proportion to tokens).
``--vllm-metrics`` serves a ``/metrics`` page with vLLM's names (requests running and
waiting, KV-cache use), ``--mode html`` answers like a web server that is not an engine,
``--exit-after-requests N`` crashes (exit code 3) after N generation requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid

from aiohttp import web


def build_app(args: argparse.Namespace) -> web.Application:
    state = {"running": 0, "served": 0}
    delay = args.token_delay_ms / 1000.0

    async def work() -> None:
        if args.burn:
            end = time.perf_counter() + delay
            while time.perf_counter() < end:
                pass
            await asyncio.sleep(0)
        else:
            await asyncio.sleep(delay)

    async def models(_: web.Request) -> web.Response:
        if args.mode == "html":
            return web.Response(text="<html><body>It works!</body></html>", content_type="text/html")
        return web.json_response({"object": "list", "data": [{"id": args.model, "object": "model"}]})

    async def metrics(_: web.Request) -> web.Response:
        if not args.vllm_metrics:
            return web.Response(status=404, text="not found")
        r = state["running"]
        text = (
            "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
            "# TYPE vllm:num_requests_running gauge\n"
            f'vllm:num_requests_running{{model_name="{args.model}"}} {r}\n'
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
            "# TYPE vllm:num_requests_waiting gauge\n"
            f'vllm:num_requests_waiting{{model_name="{args.model}"}} 0\n'
            "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n"
            "# TYPE vllm:kv_cache_usage_perc gauge\n"
            f'vllm:kv_cache_usage_perc{{model_name="{args.model}"}} {min(1.0, r / 16)}\n'
        )
        return web.Response(text=text, content_type="text/plain")

    async def generate(request: web.Request) -> web.StreamResponse:
        chat = request.path.endswith("/chat/completions")
        if args.mode == "html":
            return web.Response(text="<html><body>Not an API</body></html>", content_type="text/html")
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": {"message": "bad json", "type": "invalid_request_error"}}, status=400)
        if chat and not isinstance(body.get("messages"), list):
            return web.json_response(
                {"error": {"message": "messages is required", "type": "invalid_request_error"}}, status=422
            )
        if args.mode == "nochoices":
            return web.json_response({"result": "ok"})
        state["served"] += 1
        if args.exit_after_requests and state["served"] > args.exit_after_requests:
            os._exit(3)
        n = int(body.get("max_tokens") or 16)
        text = json.dumps(body.get("messages") if chat else body.get("prompt"))
        prompt_tokens = max(1, len(text.split()))
        rid = "cmpl-" + uuid.uuid4().hex[:12]
        created = int(time.time())
        kind = "chat.completion" if chat else "text_completion"
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}
        state["running"] += 1
        try:
            if not body.get("stream"):
                for _ in range(n):
                    await work()
                out = " ".join(f"tok{i}" for i in range(n))
                choice = (
                    {"index": 0, "message": {"role": "assistant", "content": out}, "finish_reason": "length"}
                    if chat
                    else {"index": 0, "text": out, "finish_reason": "length"}
                )
                return web.json_response(
                    {
                        "id": rid,
                        "object": kind,
                        "created": created,
                        "model": args.model,
                        "choices": [choice],
                        "usage": usage,
                    }
                )
            resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await resp.prepare(request)

            def chunk(delta: dict | None, text_piece: str | None, finish: str | None, with_usage: bool) -> bytes:
                c: dict = {"index": 0, "finish_reason": finish}
                if chat:
                    c["delta"] = delta or {}
                else:
                    c["text"] = text_piece or ""
                obj = {
                    "id": rid,
                    "object": kind + ".chunk" if chat else kind,
                    "created": created,
                    "model": args.model,
                    "choices": [c],
                }
                if with_usage:
                    obj["usage"] = usage
                return b"data: " + json.dumps(obj).encode() + b"\n\n"

            if chat:
                await resp.write(chunk({"role": "assistant"}, None, None, False))
            for i in range(n):
                await work()
                await resp.write(chunk({"content": f"tok{i} "}, f"tok{i} ", None, False))
            await resp.write(chunk({}, "", "length", args.usage_in_stream))
            if args.done:
                await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        finally:
            state["running"] -= 1

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", lambda _: web.json_response({"status": "ok"}))
    app.router.add_post("/v1/chat/completions", generate)
    app.router.add_post("/v1/completions", generate)
    return app


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", default="fake-model")
    p.add_argument("--token-delay-ms", type=float, default=5.0)
    p.add_argument("--burn", action="store_true")
    p.add_argument("--vllm-metrics", action="store_true")
    p.add_argument("--mode", choices=["openai", "html", "nochoices"], default="openai")
    p.add_argument("--exit-after-requests", type=int, default=0)
    p.add_argument("--no-usage-in-stream", dest="usage_in_stream", action="store_false")
    p.add_argument("--done", action="store_true")
    return p


def main() -> None:
    args = parser().parse_args()
    web.run_app(build_app(args), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
