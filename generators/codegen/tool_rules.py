"""The rules of a generated tool (``component_type="tool"``), checked on its module before it is validated.

A tool is one public function named after its module, which agents call through MCP: each parameter annotated
(its JSON schema comes from the annotations), a return annotation (the schema of its result), a docstring (what the
agent reads), no ``*args``/``**kwargs``. It must be deterministic — the same arguments give the same result — so it
may not read the clock, randomness, the environment or the network. Its output is bounded by the server (a result
past the limit is an error), and the jail enforces no network and no files whatever the code says.
"""

from __future__ import annotations

import ast
from pathlib import PurePosixPath

TOOL_TYPE = "tool"
PLACEHOLDER = "<what it does and what it returns>"  # shown where a docstring is missing; never a docstring itself
# Modules whose use makes a result depend on something besides the arguments (or reach the network).
FORBIDDEN_MODULES = frozenset(
    {"random", "secrets", "uuid", "socket", "ssl", "urllib", "http", "requests", "httpx", "httpx2", "aiohttp",
     "subprocess", "multiprocessing", "threading"}
)  # fmt: skip
# Calls whose result depends on the moment or the host.
FORBIDDEN_CALLS = frozenset(
    {"time.time", "time.time_ns", "time.monotonic", "time.perf_counter", "datetime.now", "datetime.utcnow",
     "datetime.today", "date.today", "datetime.datetime.now", "datetime.date.today", "os.urandom", "os.getenv",
     "os.getpid", "os.environ.get"}
)  # fmt: skip


def tool_problems(module_path: str, source: str) -> list[str]:
    """What is wrong with ``source`` as the tool module at ``module_path`` (empty: nothing)."""
    name = PurePosixPath(module_path).stem
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []  # the syntax stage reports it
    problems = [*_function_problems(tree, source, name, module_path), *_determinism_problems(tree, module_path)]
    return problems


def _function_problems(tree: ast.Module, source: str, name: str, module_path: str) -> list[str]:
    found = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name]
    if not found:
        return [f"{module_path} is a tool: define the public function {name}(...) there, the one agents call"]
    function = found[0]
    problems = []
    args = function.args
    if args.vararg is not None or args.kwarg is not None:
        problems.append(f"tool {name}: no *args or **kwargs; name every parameter")
    unannotated = [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs] if a.annotation is None]
    if unannotated:
        problems.append(f"tool {name}: annotate every parameter (its schema comes from it): {', '.join(unannotated)}")
    if function.returns is None:
        problems.append(f"tool {name}: annotate the return type (a pydantic model or a JSON type)")
    docstring = ast.get_docstring(function)
    if docstring is None:
        head = "\n".join(source.splitlines()[function.lineno - 1 : function.body[0].lineno - 1]).rstrip()
        problems.append(
            f"tool {name}: write a docstring; it is what the agent reads. Put it first in the function's body:\n"
            f'{head}\n    """{PLACEHOLDER}"""'
        )
    elif PLACEHOLDER in docstring:
        problems.append(f"tool {name}: replace {PLACEHOLDER} in its docstring with what it does and returns")
    return problems


def _determinism_problems(tree: ast.Module, module_path: str) -> list[str]:
    problems: list[str] = []
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
        problems.extend(
            f"{module_path}:{getattr(node, 'lineno', 0)}: a tool may not import {module} (it must be deterministic, "
            "without network, processes or threads)"
            for module in modules
            if module.split(".")[0] in FORBIDDEN_MODULES
        )
        if isinstance(node, ast.Call) and _dotted(node.func) in FORBIDDEN_CALLS:
            problems.append(
                f"{module_path}:{node.lineno}: a tool may not call {_dotted(node.func)}() (the same arguments must "
                "give the same result: take the moment or the value as a parameter instead)"
            )
        if isinstance(node, ast.Attribute) and _dotted(node) == "os.environ":
            problems.append(f"{module_path}:{node.lineno}: a tool may not read os.environ (take it as a parameter)")
    return problems


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""
