"""Who may import whom (../shared/DESIGN.md, "The four packages"): dashboard -> {db, profiles};
engine_runner -> {db, profiles}; db -> {profiles}; profiles -> nothing of ours. Every import statement is
checked, lazy ones inside functions too; the few deliberate exceptions are listed with their reason, so a
new arrow fails here until someone decides it is right."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("dashboard", "engine_runner", "profiles", "db")
ALLOWED = {"dashboard": {"db", "profiles"}, "engine_runner": {"db", "profiles"}, "db": {"profiles"},
           "profiles": set()}

#: (importing file, imported module) -> why it is allowed.
EXCEPTIONS = {
    ("dashboard/app_pages/new_benchmark.py", "engine_runner.jobs.model_bench"):
        "one planning function per job kind, used by the form and by `enginescope bench` (plan(), lazily)",
    ("dashboard/app_pages/models.py", "engine_runner.torch_models"):
        "registering a PyTorch model by reference reads its config with the engine's own loader (lazily)",
    ("engine_runner/commands/report.py", "dashboard"):
        "`enginescope report` renders the very report the Reports page shows: one set of figure and export "
        "builders (dashboard.report_export, which does not import streamlit)",
    ("engine_runner/commands/report.py", "dashboard.report_export"): "as above",
}


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def test_only_the_allowed_arrows() -> None:
    bad = []
    used = set()
    for pkg in PACKAGES:
        for f in sorted((REPO / pkg).rglob("*.py")):
            rel = f.relative_to(REPO).as_posix()
            for line, mod in _imports(f):
                top = mod.split(".")[0]
                if top not in PACKAGES or top == pkg or top in ALLOWED[pkg]:
                    continue
                if (rel, mod) in EXCEPTIONS:
                    used.add((rel, mod))
                    continue
                bad.append(f"{rel}:{line} imports {mod} ({pkg} -> {top} is not an allowed arrow)")
    assert bad == [], "\n".join(bad)
    assert used == set(EXCEPTIONS), f"exceptions no longer needed: {sorted(set(EXCEPTIONS) - used)}"


def test_report_export_does_not_import_streamlit() -> None:
    """The exception above holds only while the CLI can import the builders without the UI toolkit."""
    mods = {m.split(".")[0] for _, m in _imports(REPO / "dashboard" / "report_export.py")}
    assert "streamlit" not in mods
