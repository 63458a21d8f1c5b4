"""Every README example, in order, on a fresh home, as a reader would run them.

The code blocks are taken from README.md as they are: Python blocks run with this
interpreter, a Python block that starts with ``# NAME.py:`` is saved as that file (the
README's stand-in for the reader's script), and every line of a shell block is run as a
command, with the virtual environment's ``greenlm`` and ``python`` first on PATH, all in one
working folder and one ``GREENLM_HOME``, so later examples see what earlier ones stored
(``greenlm report --project bert-ft`` reports the run of the first Python example). A run id
in the README (``3fa2c1``) stands for the newest stored run. The few lines that cannot run
here are listed in :data:`NOT_RUN` with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", README.read_text(), flags=re.S | re.M)
PYTHON_BLOCKS = [code for lang, code in BLOCKS if lang == "python"]
EXAMPLE_ID = "3fa2c1"

#: Shell examples not run here, by the start of the command, and why.
NOT_RUN = {
    "make demo": "builds a virtual environment and trains for a minute; the demo is tests/test_demo.py",
    "make test": "runs this test suite",
    "greenlm optimize --model smollm2": "measures a 135M-parameter model for minutes; tests/optimize cover it",
    "greenlm optimize --model ./my-model": "needs the reader's own model folder",
    "greenlm dashboard": "a server that runs until stopped; tests/server/test_browser.py drives it in Chromium",
    "greenlm serve --port": "a proxy that runs until stopped, in front of the reader's engine; tests/serving run it "
    "against a real transformers serve",
    "greenlm bench serve": "needs the greenlm serve proxy above; tests/serving/test_bench.py runs it",
    "greenlm server serve": "a server that runs until stopped; tests/server and tests/security run it live",
    "GREENLM_SERVER=": "needs the team server above; tests/server/test_client.py sends through a live one",
}
#: Examples that cannot succeed on this machine and must say why (exit 2, the reason in the message).
NEEDS_ACCELERATOR = {
    "greenlm estimate calibrate": "fits accelerators: CPU-only runs are refused with the reason (exit 2)",
}


def _commands() -> list[str]:
    out = []
    for lang, code in BLOCKS:
        if lang:
            continue
        for line in code.splitlines():
            cmd = line.split("  #")[0].split(" # ")[0].strip()
            if cmd:
                out.append(cmd)
    return out


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLM_")}
    env["GREENLM_HOME"] = str(home)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["HF_HUB_OFFLINE"] = env["TRANSFORMERS_OFFLINE"] = "1"
    return env


def test_every_readme_example_runs_in_order(tmp_path: Path) -> None:
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    env = _env(home)
    assert PYTHON_BLOCKS and _commands(), "the README has examples"
    ran: list[str] = []
    for lang, code in BLOCKS:
        if lang == "python":
            first = code.splitlines()[0]
            named = re.match(r"#\s*([\w.-]+\.py):", first)
            if named:  # the reader's script, as the README shows it
                (work / named.group(1)).write_text(code)
                continue
            p = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, cwd=work, env=env, timeout=120
            )
            assert p.returncode == 0, f"README Python example failed:\n{code}\n{p.stderr[-3000:]}"
            assert p.stdout.strip(), code
            ran.append(code.splitlines()[0])
            continue
        for line in code.splitlines():
            cmd = line.split("  #")[0].strip()
            if not cmd or any(cmd.startswith(k) for k in NOT_RUN):
                continue
            if EXAMPLE_ID in cmd:
                newest = subprocess.run(
                    ["greenlm", "runs", "list", "--json"], capture_output=True, text=True, cwd=work, env=env
                )
                cmd = cmd.replace(EXAMPLE_ID, json.loads(newest.stdout)[0]["run_id"][:6])
            p = subprocess.run(shlex.split(cmd), capture_output=True, text=True, cwd=work, env=env, timeout=300)
            if cmd in NEEDS_ACCELERATOR and p.returncode == 2 and "no accelerator" in p.stderr:
                ran.append(cmd)  # as documented on a machine without a GPU: a clear error, no traceback
                continue
            assert p.returncode == 0, f"README command failed: {cmd}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
            assert p.stdout.strip() or p.stderr.strip(), cmd
            ran.append(cmd)

    # what the examples promise
    rows = (work / "emissions.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[0].startswith("timestamp,project_name"), "CodeCarbon's layout, one run"
    assert json.loads((work / "run.json").read_text())["status"] == "completed"
    assert (work / "runs.csv").read_text().count("\n") >= 4, "every stored run exported"
    report = (work / "report.html").read_text()
    assert "bert-ft" in report, "greenlm report --project bert-ft finds the README's own bert-ft run"
    assert any(c.startswith("greenlm report --project bert-ft") for c in ran)


def test_commands_not_run_are_in_the_readme_with_a_reason() -> None:
    cmds = _commands()
    for prefix, reason in NOT_RUN.items():
        assert any(c.startswith(prefix) for c in cmds), f"{prefix!r} is no longer in the README: drop it from NOT_RUN"
        assert reason


def test_readme_names_the_two_commands_and_ci_runs_the_test_one() -> None:
    text = README.read_text()
    assert "make demo" in text and "make test" in text
    assert "make test" in (README.parent / ".ci" / "run").read_text()


@pytest.mark.parametrize("code", PYTHON_BLOCKS, ids=[f"block{i}" for i in range(len(PYTHON_BLOCKS))])
def test_readme_python_blocks_are_valid_python(code: str) -> None:
    compile(code, "README.md", "exec")
