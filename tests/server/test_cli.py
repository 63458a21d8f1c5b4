from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from greenlm.cli import build_parser, main


def test_commands_are_registered() -> None:
    p = build_parser()
    args = p.parse_args(["dashboard"])
    assert (args.host, args.port) == ("127.0.0.1", 8787)
    args = p.parse_args(["server", "serve", "--host", "0.0.0.0", "--port", "9000"])
    assert args.host == "0.0.0.0" and args.port == 9000
    assert p.parse_args(["server", "push"]).func.__name__ == "cmd_push"


def test_cli_modules_import_cheaply() -> None:
    code = (
        "import sys, greenlm.server.cli, greenlm.report.cli; "
        "print(sorted(m for m in ('fastapi', 'uvicorn', 'jinja2', 'httpx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_token_create_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["server", "token", "create", "alice", "--store", store, "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["token"].startswith("glm_")
    assert main(["server", "token", "list", "--store", store, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [t["name"] for t in listed] == ["alice"] and "token" not in listed[0]
    assert created["token"] not in json.dumps(listed)
    assert main(["server", "token", "revoke", created["id"], "--store", store]) == 0
    assert "revoked 1 token" in capsys.readouterr().out
    assert main(["server", "token", "revoke", "alice", "--store", store]) == 2
    assert "No active token" in capsys.readouterr().err
    assert main(["server", "token", "create", "  ", "--store", store]) == 2


def test_serve_rejects_bad_port() -> None:
    assert main(["dashboard", "--port", "70000"]) == 2


def test_push_with_empty_outbox(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["server", "push"]) == 0
    assert "nothing to push" in capsys.readouterr().out
