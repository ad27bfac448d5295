"""policy/RULES.md: every rule names code that exists and a test function that exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
RULES = ROOT / "policy" / "RULES.md"
REF = re.compile(r"`([\w/]+\.py)::([\w.]+)`")


def _rows() -> list[list[str]]:
    rows = []
    for line in RULES.read_text().splitlines():
        if re.match(r"^\| R\d+ ", line):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def _defines(path: Path, dotted: str) -> bool:
    tree = ast.parse(path.read_text())
    scope: list[ast.stmt] = tree.body
    for part in dotted.split("."):
        found = None
        for node in scope:
            if (
                isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name == part
            ) or (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == part for t in node.targets)
            ):
                found = node
        if found is None:
            return False
        scope = found.body if isinstance(found, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) else []
    return True


def test_every_rule_maps_to_existing_code_and_test() -> None:
    rows = _rows()
    ids = [r[0] for r in rows]
    assert len(ids) >= 20 and len(ids) == len(set(ids)), "rule ids must be unique"
    for rid, _rule, source, code, proof in rows:
        assert source, f"{rid}: no legal or SDK source"
        code_refs, test_refs = REF.findall(code), REF.findall(proof)
        assert code_refs, f"{rid}: no enforcing code"
        assert test_refs, f"{rid}: no proving test"
        for path, name in code_refs:
            assert _defines(ROOT / path, name), f"{rid}: {path}::{name} does not exist"
        for path, name in test_refs:
            assert path.startswith("tests/policy/"), f"{rid}: proof outside tests/policy: {path}"
            assert name.startswith(("test_", "Test")), f"{rid}: {name} is not a test"
            assert _defines(ROOT / path, name), f"{rid}: {path}::{name} does not exist"


def test_every_policy_test_module_is_cited() -> None:
    cited = {p for row in _rows() for p, _ in REF.findall(row[4])}
    here = {f"tests/policy/{p.name}" for p in Path(__file__).parent.glob("test_*.py")} - {
        "tests/policy/test_rules.py"
    }
    assert here <= cited, f"test modules not tied to any rule: {sorted(here - cited)}"
