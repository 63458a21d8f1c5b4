"""Shell completion scripts for bash, zsh and fish, generated from greenlm's own parser.

``greenlm completion bash|zsh|fish`` prints a script that completes sub-commands, options,
the choices of an option (``--format csv|json``), files for path options and programs after
``greenlm track --``. The script is generated from :func:`greenlm.cli.build_parser` each
time, so a new command or option completes as soon as it exists; hidden aliases (an old
spelling kept working) are not offered.

Every script carries the same small table (for each command: its sub-commands and options;
for each option that takes a value: what to complete for it) and the same walk over the
words typed so far: an option that takes a value skips the next word, a sub-command name
descends, ``--`` ends greenlm's own words.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["SHELLS", "Node", "script", "walk"]

SHELLS = ("bash", "zsh", "fish")


@dataclass
class Node:
    """One command: its words, sub-commands, options and what each option's value is."""

    path: str
    subcommands: dict[str, str] = field(default_factory=dict)
    #: option string -> help
    options: dict[str, str] = field(default_factory=dict)
    #: option string -> ``-`` (any text), ``@file``, ``@dir`` or ``=a b c`` (choices)
    values: dict[str, str] = field(default_factory=dict)
    #: what a positional word completes to: ``@file``, ``@command``, ``=a b c`` or ``""``
    positional: str = ""


def _value_kind(a: argparse.Action) -> str:
    if a.choices is not None:
        return "=" + " ".join(str(c) for c in a.choices)
    choices = getattr(a.type, "choices", None)
    if choices:
        return "=" + " ".join(str(c) for c in choices)
    kind = getattr(a.type, "kind", "")
    if kind in ("input-file", "output-file") or getattr(a.type, "__name__", "") == "Path":
        return "@file"
    if kind == "output-dir":
        return "@dir"
    if a.metavar in ("PATH", "FILE", "DIR", "PLAN") or (isinstance(a.metavar, str) and "PATH" in a.metavar):
        return "@dir" if a.metavar == "DIR" else "@file"
    return "-"


def _first_line(text: str | None) -> str:
    t = " ".join((text or "").split())
    for stop in ("; ", ". ", " (default", " (e.g."):
        if stop in t[:80]:
            t = t[: t.index(stop)]
    return t[:80]


def walk(parser: argparse.ArgumentParser, path: str = "greenlm") -> Iterator[Node]:
    """Every command of ``parser`` as a :class:`Node`, the root first."""
    node = Node(path)
    children: list[tuple[str, argparse.ArgumentParser]] = []
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            helps = {c.dest: c.help for c in a._choices_actions}
            seen: set[int] = set()
            for name, sp in a.choices.items():
                if id(sp) in seen:
                    continue
                seen.add(id(sp))
                node.subcommands[name] = _first_line(helps.get(name))
                children.append((name, sp))
            continue
        if a.help == argparse.SUPPRESS:
            continue
        if a.option_strings:
            for s in a.option_strings:
                node.options[s] = _first_line(a.help)
                if a.nargs != 0:
                    node.values[s] = _value_kind(a)
        elif a.nargs == argparse.REMAINDER:
            node.positional = "@command"
        elif not node.positional:
            kind = _value_kind(a)
            node.positional = kind if kind != "-" else ""
    yield node
    for name, sp in children:
        yield from walk(sp, f"{path} {name}")


def script(shell: str, parser: argparse.ArgumentParser, version: str = "") -> str:
    """The completion script for ``shell`` (one of :data:`SHELLS`)."""
    nodes = list(walk(parser))
    if shell == "bash":
        return _bash(nodes, version)
    if shell == "zsh":
        return _zsh(nodes, version)
    if shell == "fish":
        return _fish(nodes, version)
    raise ValueError(f"unknown shell {shell!r}; use one of {', '.join(SHELLS)}")


def _sq(text: str) -> str:
    """``text`` in single quotes for bash and zsh."""
    return "'" + text.replace("'", "'\\''") + "'"


def _table_entries(nodes: list[Node]) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]]]:
    subs = [(n.path, " ".join(n.subcommands)) for n in nodes if n.subcommands]
    opts = [(n.path, " ".join(n.options)) for n in nodes if n.options]
    vals = [(f"{n.path} {o}", k) for n in nodes for o, k in n.values.items()]
    vals += [(f"{n.path} <arg>", n.positional) for n in nodes if n.positional]
    return subs, opts, vals


def _bash(nodes: list[Node], version: str) -> str:
    subs, opts, vals = _table_entries(nodes)

    def case(fn: str, rows: list[tuple[str, str]]) -> str:
        body = "\n".join(f"        {_sq(k)}) echo {_sq(v)} ;;" for k, v in rows)
        return f'{fn}() {{\n    case "$1" in\n{body}\n    esac\n}}\n'

    return f"""# bash completion for greenlm{f" {version}" if version else ""}, generated by `greenlm completion bash`.
# Use: eval "$(greenlm completion bash)" in ~/.bashrc (or save it in
# ~/.local/share/bash-completion/completions/greenlm).

{case("_greenlm_subcommands", subs)}
{case("_greenlm_options", opts)}
{case("_greenlm_value", vals)}
_greenlm_reply() {{
    # $1: what to complete (@file, @dir, @command, =choices, - or nothing), $2: the word so far
    case "$1" in
        @file) local IFS=$'\\n'; COMPREPLY=($(compgen -f -- "$2")) ;;
        @dir) local IFS=$'\\n'; COMPREPLY=($(compgen -d -- "$2")) ;;
        @command) COMPREPLY=($(compgen -c -- "$2")) ;;
        =*) COMPREPLY=($(compgen -W "${{1#=}}" -- "$2")) ;;
        *) COMPREPLY=() ;;
    esac
}}

_greenlm() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" path="greenlm" i=1 w kind subs
    while [ "$i" -lt "$COMP_CWORD" ]; do
        w="${{COMP_WORDS[i]}}"
        if [ "$w" = "--" ]; then  # greenlm track -- COMMAND ...
            if [ $((i + 1)) -eq "$COMP_CWORD" ]; then
                _greenlm_reply @command "$cur"
            else
                _greenlm_reply @file "$cur"
            fi
            return 0
        fi
        kind="$(_greenlm_value "$path $w")"
        if [ -n "$kind" ]; then
            if [ $((i + 1)) -eq "$COMP_CWORD" ]; then _greenlm_reply "$kind" "$cur"; return 0; fi
            i=$((i + 2))
            continue
        fi
        case " $(_greenlm_subcommands "$path") " in *" $w "*) path="$path $w" ;; esac
        i=$((i + 1))
    done
    if [[ "$cur" == -* ]]; then
        _greenlm_reply "=$(_greenlm_options "$path")" "$cur"
        return 0
    fi
    subs="$(_greenlm_subcommands "$path")"
    if [ -n "$subs" ]; then
        _greenlm_reply "=$subs" "$cur"
    else
        _greenlm_reply "$(_greenlm_value "$path <arg>")" "$cur"
    fi
}}

complete -F _greenlm greenlm
"""


def _zsh(nodes: list[Node], version: str) -> str:
    subs, opts, vals = _table_entries(nodes)

    def assoc(name: str, rows: list[tuple[str, str]]) -> str:
        body = "\n".join(f"    {_sq(k)} {_sq(v)}" for k, v in rows)
        return f"typeset -gA {name}\n{name}=(\n{body}\n)\n"

    return f"""#compdef greenlm
# zsh completion for greenlm{f" {version}" if version else ""}, generated by `greenlm completion zsh`.
# Use: eval "$(greenlm completion zsh)" in ~/.zshrc after compinit (or save it as _greenlm
# in a folder of $fpath).

{assoc("_greenlm_subs", subs)}
{assoc("_greenlm_opts", opts)}
{assoc("_greenlm_vals", vals)}
# What to complete for the words typed so far ($words, $CURRENT): sets REPLY to a kind
# (@file, @dir, @command, words or nothing) and reply to the words.
_greenlm_candidates() {{
    local cmdpath=greenlm w kind
    local -i i=2
    reply=()
    REPLY=""
    while (( i < CURRENT )); do
        w=${{words[i]}}
        if [[ $w == -- ]]; then
            if (( i + 1 == CURRENT )); then REPLY=@command; else REPLY=@file; fi
            return 0
        fi
        kind=${{_greenlm_vals[$cmdpath $w]}}
        if [[ -n $kind ]]; then
            if (( i + 1 == CURRENT )); then REPLY=$kind; break; fi
            (( i += 2 ))
            continue
        fi
        if [[ " ${{_greenlm_subs[$cmdpath]}} " == *" $w "* ]]; then cmdpath="$cmdpath $w"; fi
        (( i++ ))
    done
    if [[ -z $REPLY ]]; then
        if [[ ${{words[CURRENT]}} == -* ]]; then REPLY="=${{_greenlm_opts[$cmdpath]}}"
        elif [[ -n ${{_greenlm_subs[$cmdpath]}} ]]; then REPLY="=${{_greenlm_subs[$cmdpath]}}"
        else REPLY=${{_greenlm_vals[$cmdpath <arg>]}}
        fi
    fi
    if [[ $REPLY == [=]* ]]; then reply=(${{=REPLY#=}}); REPLY=words; fi
    return 0
}}

_greenlm() {{
    local REPLY
    local -a reply
    _greenlm_candidates
    case $REPLY in
        @file) _files ;;
        @dir) _files -/ ;;
        @command) _command_names -e ;;
        words) compadd -- $reply ;;
    esac
}}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _greenlm "$@"
else
    compdef _greenlm greenlm
fi
"""


def _fish(nodes: list[Node], version: str) -> str:
    def fq(text: str) -> str:
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    commands = [n.path for n in nodes]
    valued = [f"{n.path} {o}" for n in nodes for o in n.values]
    lines = [
        f"# fish completion for greenlm{f' {version}' if version else ''}, generated by `greenlm completion fish`.",
        "# Use: greenlm completion fish > ~/.config/fish/completions/greenlm.fish",
        "",
        "set -g __greenlm_commands " + " ".join(fq(c) for c in commands),
        "set -g __greenlm_valued " + " ".join(fq(v) for v in valued),
        "",
        "# The command the words typed so far are in ('greenlm runs list'); '--' after greenlm track's options.",
        "function __greenlm_path",
        "    set -l path greenlm",
        "    set -l skip 0",
        "    set -l words (commandline -opc)[2..-1]",
        "    set -l after",
        "    for k in (seq (count $words))",
        "        set -l w $words[$k]",
        "        set after $words[(math $k + 1)..-1]",
        "        if test $skip -eq 1",
        "            set skip 0",
        "            continue",
        "        end",
        '        if test "$w" = --',
        "            # the first word after -- is a program, the rest its arguments",
        '            if test (count $after) -eq 0; echo "$path --"; else; echo "$path -- args"; end',
        "            return",
        "        end",
        '        if contains -- "$path $w" $__greenlm_valued',
        "            set skip 1",
        '        else if contains -- "$path $w" $__greenlm_commands',
        '            set path "$path $w"',
        "        end",
        "    end",
        "    echo $path",
        "end",
        "",
        "function __greenlm_at",
        '    test (__greenlm_path) = "$argv[1]"',
        "end",
        "",
        "complete -c greenlm -e",
    ]
    for n in nodes:
        cond = f"-n {fq('__greenlm_at ' + fq(n.path))}"
        if n.subcommands:
            for name, hlp in n.subcommands.items():
                lines.append(f"complete -c greenlm {cond} -f -a {fq(name)} -d {fq(hlp)}")
        elif n.positional.startswith("="):
            lines.append(f"complete -c greenlm {cond} -f -a {fq(n.positional[1:])}")
        elif not n.positional:
            lines.append(f"complete -c greenlm {cond} -f")
        for o, hlp in n.options.items():
            flag = f"-l {o[2:]}" if o.startswith("--") else f"-s {o[1:]}"
            kind = n.values.get(o)
            if kind is None:
                extra = ""
            elif kind == "@file":
                extra = " -r -F"
            elif kind == "@dir":
                extra = " -r -a '(__fish_complete_directories)'"
            elif kind.startswith("="):
                lines.append(f"complete -c greenlm {cond} {flag} -x -a {fq(kind[1:])}")
                extra = " -x"
            else:
                extra = " -x"
            lines.append(f"complete -c greenlm {cond} {flag}{extra} -d {fq(hlp)}")
    lines.append(
        "complete -c greenlm -n 'string match -q -- \"* --\" (__greenlm_path)' -f -a '(__fish_complete_command)'"
    )
    return "\n".join(lines) + "\n"
