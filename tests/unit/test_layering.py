"""The package is a house of floors: a module imports only from its own floor and the floors below
(every import counted, at the top of a module or inside a function), and only the command line
defers its imports into functions (so `encoderlab --help` starts without torch)."""

import ast
from pathlib import Path
from testkit import ROOT

PACKAGE = ROOT / "src" / "encoderlab"

# each package or module, and the encoderlab packages it may import from (besides itself)
BASE = {"encoderlab", "encoderlab.config", "encoderlab.io", "encoderlab.validate"}
ALLOWED = {
    "config": BASE, "io": BASE, "validate": BASE, "threads": BASE,
    "model": BASE,
    "data": BASE,
    "objectives": BASE | {"encoderlab.model"},
    "training": BASE | {"encoderlab.threads", "encoderlab.model", "encoderlab.data", "encoderlab.objectives"},
    "evaluation": BASE | {"encoderlab.threads", "encoderlab.model", "encoderlab.data"},
    "study": BASE | {"encoderlab.threads", "encoderlab.model", "encoderlab.data", "encoderlab.objectives",
                     "encoderlab.training", "encoderlab.evaluation"},
}


def _imports(path: Path):
    """(module imported, inside a function?) for every encoderlab import of ``path``."""
    tree = ast.parse(path.read_text())
    local = {id(node) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
             for node in ast.walk(fn)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("encoderlab"):
            yield node.module, id(node) in local, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("encoderlab"):
                    yield alias.name, id(node) in local, node.lineno


def _floor(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_module_imports_from_a_floor_above_its_own():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if own in ("cli", "__init__"):
            continue  # the command line may use everything; the package's face imports nothing
        allowed = ALLOWED[own] | {f"encoderlab.{own}"}
        for module, _, line in _imports(path):
            if module == "encoderlab" or any(module == a or module.startswith(a + ".") for a in allowed):
                continue
            wrong.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_evaluation_takes_nothing_from_training():
    for path in (PACKAGE / "evaluation").rglob("*.py"):
        assert not [m for m, _, _ in _imports(path) if _floor(m) in ("training", "study", "cli")], path


def test_only_the_command_line_defers_imports_into_functions():
    deferred = [f"{path.relative_to(PACKAGE)}:{line} {module}" for path in sorted(PACKAGE.rglob("*.py"))
                if path.relative_to(PACKAGE).parts[0] != "cli" for module, local, line in _imports(path) if local]
    assert not deferred, "\n".join(deferred)


def test_the_command_line_defers_only_with_a_reason():
    """Each deferred import of the command line says why (start-up time: torch, transformers)."""
    unexplained = []
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        lines = path.read_text().splitlines()
        for module, local, line in _imports(path):
            if local and "start-up" not in lines[line - 1] + lines[line - 2]:  # on the import, or the line above
                unexplained.append(f"{path.relative_to(PACKAGE)}:{line} {module}")
    assert not unexplained, "\n".join(unexplained)
