"""The layout rules of DESIGN §1 and §8, checked on the source: imports run one way, one unit of work."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "myapi"
MAX_FUNCTION_LINES = 60


def modules(folder: Path = PACKAGE):
    return sorted(folder.rglob("*.py"))


def functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def test_no_function_is_longer_than_sixty_lines():
    long = [f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})"
            for path in modules() for node in functions(path)
            if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


@pytest.mark.parametrize("path", modules(PACKAGE / "services"), ids=lambda p: p.name)
def test_services_import_no_flask_and_nothing_above_them(path):
    imported = imported_modules(path)
    assert not any(name.split(".")[0] in ("flask", "flask_restful", "werkzeug") for name in imported), imported
    assert not any(name.lstrip(".").startswith(("common", "resources", "app")) for name in imported
                   if name.startswith("..")), imported


# The idempotency claim commits its own short transaction, by design (it must be
# visible to other workers before the work starts; docs/decisions.md).
OWN_TRANSACTIONS = {"idempotency.py"}


@pytest.mark.parametrize("path", [p for p in modules(PACKAGE / "services") if p.name not in OWN_TRANSACTIONS],
                         ids=lambda p: p.name)
def test_services_never_end_the_transaction(path):
    calls = [node.func.attr for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)]
    assert "commit" not in calls  # (a dry-run import rolls back its own savepoint, not the transaction)


@pytest.mark.parametrize("path", modules(PACKAGE / "resources"), ids=lambda p: p.name)
def test_resources_hold_no_sql_and_no_add_resource(path):
    text = path.read_text()
    assert "add_resource" not in text  # app.py holds the whole route table
    assert not any(name in imported_modules(path) for name in ("sqlalchemy", "sqlalchemy.orm"))
