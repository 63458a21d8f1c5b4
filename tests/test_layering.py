"""The package's import arrows point downstream (docs/architecture.md), checked from the source.

meters -> tracking -> carbon -> store -> report/server: a number's path is visible in the
folders only while the lower layers import nothing above them. Also: no library module
imports a command-line module, and no package reaches into another package's private
(underscore) modules. Imports inside functions count too: a lazy import is still a
dependency.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "greenlm"

#: Lower layers and what they may never import.
LOWER = ("greenlm.tracking", "greenlm.meters", "greenlm.carbon", "greenlm.store", "greenlm.data")
UPPER = ("greenlm.server", "greenlm.report", "greenlm.integrations", "greenlm.optimize", "greenlm.serving")


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = _module_name(path)
    if path.name != "__init__.py":
        pkg = pkg.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
    return [(n, m) for n, m in out if m.startswith("greenlm")]


def _is_cli(mod: str) -> bool:
    return mod == "greenlm.cli" or mod.endswith(".cli") or ".cli." in mod


def _violations() -> list[str]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        me = _module_name(path)
        my_pkg = ".".join(me.split(".")[:2])
        for line, mod in _imports(path):
            where = f"{path.relative_to(SRC.parent)}:{line} imports {mod}"
            if me.startswith(LOWER) and mod.startswith(UPPER):
                found.append(f"{where} (a lower layer importing an upper one)")
            if _is_cli(mod) and not _is_cli(me) and me not in ("greenlm.__main__",):
                found.append(f"{where} (a library module importing a CLI module)")
            parts = mod.split(".")
            private = [p for p in parts[2:] if p.startswith("_") and not p.startswith("__")]
            if private and ".".join(parts[:2]) != my_pkg:
                found.append(f"{where} (another package's private module)")
    return sorted(set(found))


#: Known wrong arrows still being removed (issue 9); this list only ever shrinks.
PENDING = {}


def test_import_arrows_point_downstream():
    left = [v for v in _violations() if not any(v.startswith(p + " ") or v.startswith(p + ".") for p in PENDING)]
    assert left == []


def test_only_the_store_touches_sql():
    """The server, the reports and the rest reach runs through the store's public interface."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        me = _module_name(path)
        if me.startswith("greenlm.store"):
            continue
        for line, mod in _imports(path):
            if mod.startswith("greenlm.store.schema"):
                found.append(f"{path.relative_to(SRC.parent)}:{line} imports {mod}")
        text = path.read_text(encoding="utf-8")
        if "import sqlalchemy" in text or "from sqlalchemy" in text:
            found.append(f"{path.relative_to(SRC.parent)} uses SQLAlchemy directly")
        # the store's SQLAlchemy engine (``store.engine.connect()``), not a serving engine's name
        if re.search(r"\b\w*store\w*\.engine\b|\.engine\.(connect|begin|dispose)\(|\bstore\.begin\(", text):
            found.append(f"{path.relative_to(SRC.parent)} reaches into the store's engine or transactions")
    assert found == []


def test_the_checker_sees_a_wrong_import(tmp_path, monkeypatch):
    # the check must be able to fail: a meter importing the server is caught
    fake = tmp_path / "greenlm"
    (fake / "meters").mkdir(parents=True)
    (fake / "meters" / "bad.py").write_text("def f():\n    from greenlm.server import app\n")
    (fake / "report").mkdir()
    (fake / "report" / "bad.py").write_text("from greenlm.carbon._tables import x\nimport greenlm.estimate.cli\n")
    monkeypatch.setattr(__import__(__name__), "SRC", fake, raising=False)
    global SRC
    old, SRC = SRC, fake
    try:
        v = _violations()
    finally:
        SRC = old
    assert any("meters/bad.py:2 imports greenlm.server" in x for x in v), v
    assert any("private module" in x for x in v), v
    assert any("CLI module" in x for x in v), v
