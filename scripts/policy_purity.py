"""Policy decides, storage stores: fail when a policy module holds SQL or seals data itself.

Run by scripts/layers (so by scripts/check and CI). Reads every ``policy/**/*.py`` as source
(nothing is imported) and reports, as ``file:line: reason``:

* a string literal that reads as SQL (SELECT ... FROM, INSERT INTO, UPDATE ... SET,
  DELETE FROM, CREATE/DROP/ALTER TABLE or INDEX, PRAGMA): SQL and schema live in storage/;
* a call of ``seal(...)`` / ``x.seal(...)`` or an import of ``seal``: storage seals;
* an import of ``sqlite3`` or ``aiosqlite``: policy opens no database itself.

Usage: ``python scripts/policy_purity.py [REPO]``; exit 1 with the findings, 0 when clean.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

SQL = re.compile(
    r"\bSELECT\b[\s\S]+\bFROM\b|\bINSERT\s+(OR\s+\w+\s+)?INTO\b|\bUPDATE\s+[\w.]+\s+SET\b|\bDELETE\s+FROM\b"
    r"|\b(CREATE|DROP|ALTER)\s+(UNIQUE\s+)?(TABLE|INDEX)\b|\bPRAGMA\s+\w+"
)
DATABASES = {"sqlite3", "aiosqlite"}


def findings(path: Path) -> list[str]:
    """The purity findings of one source file, as ``path:line: reason``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[str] = []
    for node in ast.walk(tree):
        reason = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
            reason = "SQL in a policy module (move it into a storage repository)"
        elif isinstance(node, ast.Call):
            func = node.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            if name == "seal":
                reason = "seal() in a policy module (storage seals: storage/sealed_kv.py and repositories)"
        elif isinstance(node, ast.ImportFrom):
            if any(alias.name == "seal" for alias in node.names):
                reason = "imports seal (storage seals)"
            elif (node.module or "").split(".")[0] in DATABASES:
                reason = f"imports {node.module} (storage opens the databases)"
        elif isinstance(node, ast.Import) and any(a.name.split(".")[0] in DATABASES for a in node.names):
            reason = "imports a database driver (storage opens the databases)"
        if reason is not None:
            out.append(f"{path}:{getattr(node, 'lineno', 0)}: {reason}")
    return out


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1]
    found = [f for path in sorted((root / "policy").rglob("*.py")) for f in findings(path)]
    for line in found:
        print(line)
    if found:
        print(f"policy purity: {len(found)} finding(s): policy decides, storage stores", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
