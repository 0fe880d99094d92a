"""The package's shape, read from its source with `ast` (nothing is imported or run).

- No import cycles in keras_resnet/: no module imports one that imports it back, through
  any chain. Imports inside functions count as much as those at the top of a module (they
  only postpone the cycle), and so do those under `if TYPE_CHECKING:` (the modules still
  need each other, to be read if not to run). An import edge is "in a cycle" when the
  module it imports reaches the importer back.
- No function takes more than `MAX_PARAMETERS` parameters (`self`/`cls` of a method not
  counted; `*args` and `**kwargs` count one each) or runs over `MAX_BODY_LINES` lines of
  body (its docstring not counted).

Known offenders would be listed below (issue 29 fixed the last of them). The lists must
equal what is found: a new offender fails the test, and so does a listed one that was
fixed, so the lists can only shrink.
"""

import ast
from pathlib import Path

PACKAGE = "keras_resnet"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
MAX_PARAMETERS = 10
MAX_BODY_LINES = 60

# Import edges in cycles, as "importer -> imported": none left; a new one fails the test.
KNOWN_CYCLE_EDGES: set[str] = set()

# Functions over the limits, as "module:qualified name": none left; a new one fails the test.
KNOWN_LONG_FUNCTIONS: set[str] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _import_nodes(tree: ast.AST):
    """Every import statement, at any depth."""
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def _imported(node, importer: str, is_package: bool, modules) -> set[str]:
    """The keras_resnet modules an import statement loads (a submodule when it names one)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in modules}
    base = node.module or ""
    if node.level:
        package = importer if is_package else importer.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    if base not in modules:
        return set()
    found = set()
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        found.add(sub if sub in modules else base)
    return found


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        edges = set()
        for node in _import_nodes(tree):
            edges |= _imported(node, name, path.name == "__init__.py", modules)
        graph[name] = edges - {name}
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        for nxt in graph[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def cycle_edges(graph: dict[str, set[str]]) -> set[str]:
    reach = {name: _reachable(graph, name) for name in graph}
    return {f"{a} -> {b}" for a, targets in graph.items() for b in targets if a in reach[b]}


def _functions(tree: ast.AST, prefix: str = ""):
    """(qualified name, node, is a method) for every function, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.ClassDef):
            yield from _class_functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield f"{prefix}{node.name}", (node, False)
            yield from _functions(node, f"{prefix}{node.name}.")


def _class_functions(cls: ast.ClassDef, prefix: str):
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            static = any(getattr(d, "id", None) == "staticmethod" for d in node.decorator_list)
            yield f"{prefix}{node.name}", (node, not static)
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _class_functions(node, f"{prefix}{node.name}.")


def parameter_count(node: ast.FunctionDef, is_method: bool) -> int:
    a = node.args
    count = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs)
    count += (a.vararg is not None) + (a.kwarg is not None)
    return count - 1 if is_method and (a.posonlyargs or a.args) else count


def body_lines(node: ast.FunctionDef) -> int:
    body = node.body
    if (
        len(body) > 1
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        body = body[1:]
    return body[-1].end_lineno - body[0].lineno + 1


def long_functions() -> dict[str, str]:
    found = {}
    for module, path in _modules().items():
        tree = ast.parse(path.read_text(), str(path))
        for name, (node, is_method) in _functions(tree):
            params, lines = parameter_count(node, is_method), body_lines(node)
            if params > MAX_PARAMETERS or lines > MAX_BODY_LINES:
                found[f"{module}:{name}"] = f"{params} parameters, {lines} lines of body"
    return found


def test_no_new_import_cycles_and_no_fixed_ones_still_listed():
    found = cycle_edges(_import_graph())
    new, fixed = sorted(found - KNOWN_CYCLE_EDGES), sorted(KNOWN_CYCLE_EDGES - found)
    assert not new, f"import cycles: {new}"
    assert not fixed, f"no longer in a cycle, remove from KNOWN_CYCLE_EDGES: {fixed}"


def test_no_new_long_functions_and_no_fixed_ones_still_listed():
    found = long_functions()
    new = {name: found[name] for name in sorted(set(found) - KNOWN_LONG_FUNCTIONS)}
    fixed = sorted(KNOWN_LONG_FUNCTIONS - set(found))
    assert not new, f"over {MAX_PARAMETERS} parameters or {MAX_BODY_LINES} lines: {new}"
    assert not fixed, f"within the limits now, remove from KNOWN_LONG_FUNCTIONS: {fixed}"


def test_the_checks_find_what_they_look_for():
    """Each check on a small source written for it: imports at every level, a cycle, and
    functions at and just over each limit."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycle_edges(graph) == {"a -> b", "b -> c", "c -> a"}
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from keras_resnet import spec\n"
        "def f():\n    from keras_resnet import builder\n"
    )
    tree = ast.parse(source)
    modules = {"keras_resnet", "keras_resnet.spec", "keras_resnet.builder"}
    loaded = set().union(*(_imported(n, "m", False, modules) for n in _import_nodes(tree)))
    assert loaded == {"keras_resnet.spec", "keras_resnet.builder"}
    many = ", ".join(f"a{i}" for i in range(MAX_PARAMETERS))
    source = (
        f"class C:\n    def m(self, {many}):\n        pass\n"
        f"def f({many}, *rest):\n    '''doc'''\n" + "    x = 1\n" * MAX_BODY_LINES
    )
    functions = dict(_functions(ast.parse(source)))
    node, is_method = functions["C.m"]
    assert parameter_count(node, is_method) == MAX_PARAMETERS
    node, is_method = functions["f"]
    assert parameter_count(node, is_method) == MAX_PARAMETERS + 1
    assert body_lines(node) == MAX_BODY_LINES
