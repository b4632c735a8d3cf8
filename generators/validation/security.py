"""Stage 3: the security policy, checked on the AST (plus bandit's findings where bandit is installed)."""

from __future__ import annotations

import ast
import os
import posixpath

from generators.validation.models import Finding, StageOutcome
from generators.validation.names import argument, constant_str, dotted_name, import_aliases

_EVAL = {"eval", "exec", "builtins.eval", "builtins.exec"}
_COMPILE = {"compile", "builtins.compile"}
_SHELL = {
    "os.system": "runs a shell command",
    "os.popen": "runs a shell command",
    "subprocess.getoutput": "always runs through a shell",
    "subprocess.getstatusoutput": "always runs through a shell",
    "asyncio.create_subprocess_shell": "runs a shell command",
}
_DESERIALIZE = {
    f"{module}.{name}"
    for module in ("pickle", "_pickle", "cPickle", "dill", "cloudpickle", "marshal")
    for name in ("load", "loads", "Unpickler")
} | {"shelve.open", "shelve.DbfilenameShelf", "yaml.unsafe_load", "yaml.full_load", "jsonpickle.decode"}
_DYNAMIC_IMPORT = {"__import__", "builtins.__import__", "importlib.import_module", "importlib.__import__"}
_OPENERS = {"open", "builtins.open", "io.open", "codecs.open"}
_DELETERS = {"os.remove", "os.unlink", "os.rmdir", "shutil.rmtree"}
_PATH_WRITERS = {"write_text", "write_bytes", "touch", "unlink", "rmdir"}
NETWORK_MODULES = frozenset(
    {
        "socket",
        "ssl",
        "urllib.request",
        "http.client",
        "http.server",
        "xmlrpc.client",
        "ftplib",
        "smtplib",
        "poplib",
        "imaplib",
        "telnetlib",
        "requests",
        "httpx",
        "httpx2",
        "aiohttp",
        "urllib3",
        "websockets",
        "websocket",
        "paramiko",
        "pycurl",
        "grpc",
        "openai",
        "boto3",
        "botocore",
    }
)
_NETWORK_CALLS = {"asyncio.open_connection", "asyncio.start_server", "asyncio.open_unix_connection"}


def network_module(dotted: str) -> str | None:
    """The network module ``dotted`` is or lies in (``urllib.request.urlopen`` → ``urllib.request``), if any."""
    parts = dotted.split(".")
    for depth in range(1, len(parts) + 1):
        prefix = ".".join(parts[:depth])
        if prefix in NETWORK_MODULES:
            return prefix
    return None


class _Policy(ast.NodeVisitor):
    def __init__(self, path: str, tree: ast.Module, workspace: str, allow_network: bool) -> None:
        self.path, self.workspace, self.allow_network = path, workspace, allow_network
        self.aliases = import_aliases(tree)
        self.findings: list[Finding] = []

    def report(self, node: ast.expr | ast.stmt, rule: str, message: str) -> None:
        self.findings.append(Finding(self.path, node.lineno, message, rule))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._network_import(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:
            if network_module(node.module):
                self._network_import(node, node.module)
            else:
                for alias in node.names:
                    self._network_import(node, f"{node.module}.{alias.name}")

    def _network_import(self, node: ast.stmt | ast.expr, dotted: str) -> None:
        module = network_module(dotted)
        if module and not self.allow_network:
            self.report(node, "SEC008", f"network access ({module}) is not allowed for this component type")

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        name = dotted_name(node.func, self.aliases)
        if name is not None:
            self._check_call(node, name)
        elif isinstance(node.func, ast.Attribute) and node.func.attr in _PATH_WRITERS | {"open"}:
            self._check_path_method(node, node.func)

    def _check_call(self, node: ast.Call, name: str) -> None:
        if name in _EVAL:
            self.report(node, "SEC001", f"{name}() runs arbitrary code; parse data with json or ast.literal_eval")
        elif name in _COMPILE and not isinstance(argument(node, 0, "source"), ast.Constant):
            self.report(node, "SEC002", "compile() of a non-literal source runs arbitrary code")
        elif name in _SHELL:
            self.report(node, "SEC003", f"{name}() {_SHELL[name]}; use subprocess.run([...]) with a list of arguments")
        elif name.startswith("subprocess.") and self._shell_true(node):
            self.report(node, "SEC004", f"{name}(shell=True) runs through a shell; pass a list and drop shell=True")
        elif name in _DESERIALIZE or (name == "yaml.load" and not self._safe_yaml(node)):
            self.report(node, "SEC005", f"{name}() can run code from its input; use json or yaml.safe_load")
        elif name in _DYNAMIC_IMPORT:
            module = constant_str(argument(node, 0, "name"))
            if module is None:
                self.report(node, "SEC006", f"{name}() with a computed module name; import modules statically")
            else:
                self._network_import(node, module)
        elif name in _OPENERS and self._writes(node, 1):
            self._check_target(node, argument(node, 0, "file"))
        elif name in _DELETERS:
            self._check_target(node, argument(node, 0, "path"))
        elif name in _NETWORK_CALLS:
            self._network_import(node, name)

    def _check_path_method(self, node: ast.Call, func: ast.Attribute) -> None:
        base = func.value
        if not isinstance(base, ast.Call) or dotted_name(base.func, self.aliases) not in {"pathlib.Path", "Path"}:
            return
        if func.attr != "open" or self._writes(node, 0):
            self._check_target(node, argument(base, 0, "path"))

    def _check_target(self, node: ast.Call, target: ast.expr | None) -> None:
        path = constant_str(target)
        if path is not None and self._outside(path):
            self.report(node, "SEC007", f"writes to {path!r}, outside the workspace; write under the workspace")

    def _outside(self, path: str) -> bool:
        if path.startswith("~"):
            return True
        normal = posixpath.normpath(path)
        if os.path.isabs(normal):
            return not (normal == self.workspace or normal.startswith(self.workspace.rstrip("/") + "/"))
        return normal == ".." or normal.startswith("../")

    @staticmethod
    def _writes(node: ast.Call, position: int) -> bool:
        mode = argument(node, position, "mode")
        if mode is None:
            return False
        text = constant_str(mode)
        return text is None or any(flag in text for flag in "wax+")

    @staticmethod
    def _shell_true(node: ast.Call) -> bool:
        shell = next((kw.value for kw in node.keywords if kw.arg == "shell"), None)
        return shell is not None and not (isinstance(shell, ast.Constant) and not shell.value)

    def _safe_yaml(self, node: ast.Call) -> bool:
        loader = argument(node, 1, "Loader")
        name = dotted_name(loader, self.aliases) if loader is not None else None
        return name is not None and name.rsplit(".", 1)[-1] in {"SafeLoader", "CSafeLoader", "BaseLoader"}


def check_policy(sources: list[tuple[str, ast.Module]], workspace: str, allow_network: bool) -> list[Finding]:
    """Findings of the built-in policy for each ``(path, tree)``."""
    findings: list[Finding] = []
    for path, tree in sources:
        policy = _Policy(path, tree, workspace, allow_network)
        policy.visit(tree)
        findings.extend(policy.findings)
    return findings


def security_outcome(findings: list[Finding], bandit: StageOutcome | None, allow_network: bool) -> StageOutcome:
    """Merge the policy's findings with bandit's (when it ran) into the stage outcome."""
    notes = [f"network {'allowed' if allow_network else 'not allowed'}"]
    if bandit is not None:
        findings = findings + bandit.findings
        notes.append(bandit.note)
    return StageOutcome(findings, note="; ".join(notes))
