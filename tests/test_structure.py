"""The package structure: dependencies point one way, every module imports on its own, files stay small."""

import ast
import json
import os

from conftest import ROOT, run_py

PACKAGES = ("common", "methods", "configs")


def _modules() -> dict[str, str]:
    """Dotted module name -> file path, for every module of the project (and launch.py)."""
    out = {"launch": os.path.join(ROOT, "launch.py")}
    for pkg in PACKAGES:
        for root, _, files in os.walk(os.path.join(ROOT, pkg)):
            for f in files:
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(root, f), ROOT)[:-3].replace(os.sep, ".")
                    out[rel.removesuffix(".__init__")] = os.path.join(root, f)
    return out


def _imports(path: str, name: str, modules: dict) -> set[str]:
    """Project modules `path` imports anywhere in the file (module level or inside functions)."""
    is_pkg = path.endswith("__init__.py")
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parts = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                base = ".".join(parts + ([base] if base else []))
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def _cycle(g: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(g[n]):
            if state.get(m) == "open":
                return stack[stack.index(m) :] + [m]
            if m not in state and (c := visit(m)):
                return c
        state[n] = "done"
        stack.pop()
        return None

    for n in sorted(g):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_the_import_graph_has_no_cycle_even_through_imports_inside_functions():
    g = graph()
    assert len(g) > 40 and "methods.compression.codec" in g and "common.train.trainer" in g
    assert _cycle(g) is None, " -> ".join(_cycle(g))
    # and the cycle finder finds one when there is one (a method's evaluation importing its package back)
    g["methods.tone.evaluate"] = g["methods.tone.evaluate"] | {"methods.tone"}
    assert _cycle(g) == ["methods.tone", "methods.tone.evaluate", "methods.tone"]


def test_dependencies_point_one_way():
    g = graph()
    for name, deps in g.items():
        if name.startswith("common."):
            assert not [d for d in deps if d.startswith(("methods", "configs"))], name
        if name.startswith("methods.") and name.count(".") == 2:  # methods.<m>.<part>
            package = name.rsplit(".", 1)[0]
            assert package not in deps, f"{name} imports its package's __init__ ({package})"
            others = {d.split(".")[1] for d in deps if d.startswith("methods.")} - {name.split(".")[1]}
            assert not others, f"{name} imports another method: {others}"


def test_every_module_imports_first_in_a_fresh_interpreter():
    """Each module imported before any other project module, in one fresh interpreter per module group."""
    names = sorted(n for n in _modules() if n != "launch")
    code = (
        "import importlib, json, sys\n"
        "bad = {}\n"
        f"for n in {names!r}:\n"
        "    for m in [k for k in sys.modules if k.split('.')[0] in ('common', 'methods', 'configs')]:\n"
        "        del sys.modules[m]\n"
        "    try:\n"
        "        importlib.import_module(n)\n"
        "    except Exception as e:\n"
        "        bad[n] = repr(e)\n"
        "print(json.dumps(bad))\n"
    )
    p = run_py(["-c", code])
    assert json.loads(p.stdout.strip().splitlines()[-1]) == {}


# General metrics any method may report, kept in common/ although one method uses them today.
GENERAL_METRICS = {"common.quality.fid"}


def test_common_holds_only_what_several_methods_share():
    """No module under common/ is imported by exactly one method (it belongs in that method's package), and
    every module of common/ sits in a package by concern, not on common/'s floor (but the errors)."""
    users = {}
    for name, deps in graph().items():
        if name.startswith("methods.") and name != "methods":
            for d in deps:
                if d.startswith("common."):
                    users.setdefault(d, set()).add(name.split(".")[1])
    single = {m: sorted(u) for m, u in users.items() if len(u) == 1 and m not in GENERAL_METRICS}
    assert not single, f"common/ modules that only one method imports: {single}"
    assert users.get("common.quality.metrics") and len(users["common.quality.metrics"]) > 1  # the check sees users
    floor = sorted(n for n in _modules() if n.count(".") == 1 and n.startswith("common.") and n != "common.errors")
    packages = {n.split(".")[1] for n in _modules() if n.count(".") == 2 and n.startswith("common.")}
    assert set(floor) == {f"common.{p}" for p in packages}, floor  # only the packages' __init__ on the floor


def test_every_method_package_is_listed_with_its_config():
    from methods import METHODS

    packages = {d for d in os.listdir(os.path.join(ROOT, "methods")) if os.path.isdir(os.path.join(ROOT, "methods", d))}
    packages -= {"__pycache__"}
    assert set(METHODS) == packages, f"methods/ packages {sorted(packages)} vs methods.METHODS {METHODS}"
    for m in METHODS:
        assert os.path.exists(os.path.join(ROOT, "configs", f"{m}.py")), m


def test_no_file_is_long():
    long = {n: c for n, p in _modules().items() if (c := sum(1 for _ in open(p))) > 420}
    assert not long, long
