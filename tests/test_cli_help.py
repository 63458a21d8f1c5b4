"""The command line for people: every option has help, help reads as text, shells complete greenlm.

Walks ``greenlm.cli.build_parser()``, so a new command or option is checked as soon as it
exists. The completion scripts are run in the real shells: bash always (it is on every CI
machine), zsh and fish where installed (their syntax check is skipped otherwise, the scripts
are still generated and checked for their content).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess

import pytest

from greenlm.cli import build_parser, main

#: Docstring (reST/Sphinx) markup that must not reach a --help page.
MARKUP = re.compile(r"``|:(func|class|mod|meth|attr|data|exc|obj|ref|doc):`|\.\. \w+::")


def _parsers(
    p: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    out = [(path, p)]
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            seen: set[int] = set()
            for name, sp in a.choices.items():
                if id(sp) not in seen:
                    seen.add(id(sp))
                    out += _parsers(sp, (*path, name))
    return out


PARSERS = _parsers(build_parser())


def test_every_option_and_argument_has_help():
    missing = []
    for path, p in PARSERS:
        for a in p._actions:
            if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if a.help == argparse.SUPPRESS:  # a hidden alias (an old spelling kept working)
                continue
            if not (a.help or "").strip():
                missing.append(f"greenlm {' '.join(path)} {'/'.join(a.option_strings) or a.dest}")
    assert not missing, "options without help:\n" + "\n".join(missing)
    assert len(PARSERS) > 30  # the walk reached the sub-commands


@pytest.mark.parametrize("path", [p for p, _ in PARSERS], ids=lambda p: "-".join(p) or "greenlm")
def test_help_pages_have_no_docstring_markup(path, capsys):
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: greenlm")
    bad = [line for line in out.splitlines() if MARKUP.search(line)]
    assert not bad, "docstring markup in --help:\n" + "\n".join(bad)


def _script(shell: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["completion", shell]) == 0
    return capsys.readouterr().out


def _bash_complete(script: str, words: list[str], tmp_path) -> list[str]:
    """What bash's completion function offers for ``words`` (the last one is being typed)."""
    f = tmp_path / "greenlm.bash"
    f.write_text(script)
    words_q = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    prog = (
        f"source {f}\n"
        f"COMP_WORDS=({words_q}); COMP_CWORD={len(words) - 1}\n"
        'COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}\n'
        '_greenlm greenlm "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", prog], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return [x for x in r.stdout.splitlines() if x]


def test_bash_completion_parses_registers_and_completes(tmp_path, capsys):
    script = _script("bash", capsys)
    f = tmp_path / "greenlm.bash"
    f.write_text(script)
    assert subprocess.run(["bash", "-n", str(f)], capture_output=True, timeout=30).returncode == 0
    r = subprocess.run(
        ["bash", "--norc", "-c", f"source {f}; complete -p greenlm"], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 0 and "-F _greenlm greenlm" in r.stdout, r.stderr
    # a sub-command, a nested sub-command, an option, an option's choices, after another option's value
    assert {"track", "runs", "estimate", "completion"} <= set(_bash_complete(script, ["greenlm", ""], tmp_path))
    assert _bash_complete(script, ["greenlm", "ru"], tmp_path) == ["runs"]
    assert "list" in _bash_complete(script, ["greenlm", "runs", ""], tmp_path)
    assert "--limit" in _bash_complete(script, ["greenlm", "runs", "list", "--li"], tmp_path)
    assert _bash_complete(script, ["greenlm", "runs", "export", "--format", ""], tmp_path) == ["csv", "json"]
    est = _bash_complete(script, ["greenlm", "estimate", "train", "--params", "7e9", "--"], tmp_path)
    assert "--tokens" in est and "--hardware" in est and "--limit" not in est
    assert set(_bash_complete(script, ["greenlm", "completion", ""], tmp_path)) == {"bash", "zsh", "fish"}
    # hidden aliases are not offered; their replacement is
    mon = _bash_complete(script, ["greenlm", "monitor", "serve", "--"], tmp_path)
    assert "--host" in mon and "--addr" not in mon


def test_completion_scripts_follow_the_parser(capsys):
    """A new option completes without editing the scripts: every visible option is in each script."""
    scripts = {sh: _script(sh, capsys) for sh in ("bash", "zsh", "fish")}
    for path, p in PARSERS:
        for a in p._actions:
            if a.help == argparse.SUPPRESS or not a.option_strings or isinstance(a, argparse._HelpAction):
                continue
            long = [s for s in a.option_strings if s.startswith("--")]
            for s in long:
                assert s in scripts["bash"] and s in scripts["zsh"], (path, s)
                assert f"-l {s[2:]}" in scripts["fish"], (path, s)


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_are_valid(shell, tmp_path, capsys):
    script = _script(shell, capsys)
    assert "greenlm" in script and "runs" in script and "--limit" in script
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed: the script was generated but not syntax-checked")
    f = tmp_path / f"greenlm.{shell}"
    f.write_text(script)
    r = subprocess.run([shell, "-n", str(f)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def test_fish_completes_a_subcommand_and_an_option(tmp_path, capsys):
    if shutil.which("fish") is None:
        pytest.skip("fish is not installed")
    f = tmp_path / "greenlm.fish"
    f.write_text(_script("fish", capsys))

    def complete(line: str) -> list[str]:
        r = subprocess.run(
            ["fish", "--no-config", "-c", f"source {f}; complete -C '{line}'"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode == 0, r.stderr
        return [x.split("\t")[0] for x in r.stdout.splitlines()]

    assert "runs" in complete("greenlm ")
    assert "--limit" in complete("greenlm runs list --li")


def test_unknown_shell_is_a_usage_error(capsys):
    assert main(["completion", "tcsh"]) == 2
    assert "invalid choice: 'tcsh'" in capsys.readouterr().err


def test_runs_list_fits_80_columns_and_json_keeps_the_full_values(tmp_path, monkeypatch, capsys):
    import json

    from greenlm import EnergyTracker

    monkeypatch.setenv("GREENLM_HOME", str(tmp_path / "home"))
    long_project = "a-project-name-much-longer-than-any-table-column-" + "x" * 60
    for project in (long_project, "short"):
        with EnergyTracker(project=project, interval_s=0.05, location="DEU"):
            pass
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["runs", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    # the long project is cut with an ellipsis to what fits (never below 12 characters)
    cut = [line.split()[1] for line in lines if "\u2026" in line]
    assert len(cut) == 1 and long_project.startswith(cut[0][:-1]) and len(cut[0]) >= 12, lines
    assert any(" short " in line and "completed" in line and "J" in line for line in lines)
    monkeypatch.setenv("COLUMNS", "300")
    assert main(["runs", "list"]) == 0
    wide = capsys.readouterr().out
    assert long_project in wide and "provenance" in wide
    assert main(["runs", "list", "--json"]) == 0
    assert long_project in {r["project"] for r in json.loads(capsys.readouterr().out)}
