"""Stage 6: tenant isolation. Code under ``components/<tenant>/`` may not import or name another tenant's package
(``components.<other>``: imports, attribute chains, string literals), and a tenant's change may not write into
another tenant's folder."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import PurePosixPath

from generators.validation.imports import absolute_module
from generators.validation.models import Finding, StageOutcome, ValidationConfig
from generators.validation.names import dotted_name


def tenant_folder(path: str, config: ValidationConfig) -> tuple[str, str] | None:
    """``(component root, tenant)`` when ``path`` lies in a tenant's folder (``components/<tenant>/...``; the shared
    packages are no tenant's)."""
    parts = PurePosixPath(path).parts
    for root in config.component_roots:
        root_parts = PurePosixPath(root).parts
        if len(parts) > len(root_parts) + 1 and parts[: len(root_parts)] == root_parts:
            tenant = parts[len(root_parts)]
            return None if tenant in config.shared_component_packages else (PurePosixPath(root).as_posix(), tenant)
    return None


class _Tenancy:
    def __init__(self, config: ValidationConfig, system_tenant: str, is_dir: Callable[[str], bool]) -> None:
        self.config, self.is_dir = config, is_dir
        self.roots = {PurePosixPath(r).as_posix() for r in config.component_roots}
        self.system_tenant = system_tenant
        dotted = "|".join(re.escape(r.replace("/", ".")) for r in sorted(self.roots))
        paths = "|".join(re.escape(r) for r in sorted(self.roots))
        # In a string: a module path (components.bank.ledger) or a file path (components/acme.eu/x.py, whose
        # folder may be any tenant id: letters, digits, '.', '_', '-').
        self.dotted = re.compile(rf"(?<![\w.])(?:{dotted})\.[A-Za-z_]\w*") if dotted else None
        self.path = re.compile(rf"(?<![\w.])(?:{paths})[/\\][A-Za-z0-9][A-Za-z0-9_.-]*") if paths else None

    def locate(self, path: str) -> tuple[str, str] | None:
        """``(component root, tenant)`` when ``path`` lies in a tenant's folder (:func:`tenant_folder`)."""
        return tenant_folder(path, self.config)

    def tenant_of(self, path: str) -> str | None:
        """The tenant whose folder holds ``path``, if any."""
        found = self.locate(path)
        return found[1] if found else None

    def other_tenant(self, path: str, own: str) -> str | None:
        """The foreign tenant package (a folder under a component root) ``path`` (``/``-separated) lies in, if any."""
        found = self.locate(path + "/_")
        if found is None or found[1] == own or not self.is_dir(f"{found[0]}/{found[1]}"):
            return None
        return found[1]

    def scan(self, path: str, tree: ast.Module, own: str) -> list[Finding]:
        seen: dict[tuple[int, str, str], Finding] = {}
        for node in ast.walk(tree):
            for where, how in self._references(path, node):
                other = self.other_tenant(where, own)
                if other is not None and isinstance(node, ast.expr | ast.stmt):
                    message = f"tenant {own!r} code {how} tenant {other!r}'s package; use only its own or shared ones"
                    seen.setdefault((node.lineno, other, how), Finding(path, node.lineno, message, "TEN001"))
        return list(seen.values())

    def _references(self, path: str, node: ast.AST) -> list[tuple[str, str]]:
        """What ``node`` refers to, as ``/``-separated paths, with how (imports or names)."""
        if isinstance(node, ast.Import):
            return [(_slashed(alias.name), "imports") for alias in node.names]
        if isinstance(node, ast.ImportFrom):
            module = absolute_module(path, node, self.config)
            if module is None:
                return []
            return [(_slashed(f"{module}.{alias.name}" if module else alias.name), "imports") for alias in node.names]
        if isinstance(node, ast.Attribute):
            dotted = dotted_name(node, {})
            return [(_slashed(dotted), "names")] if dotted else []
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found = [_slashed(m.group(0)) for m in self.dotted.finditer(node.value)] if self.dotted else []
            if self.path is not None:
                found += [m.group(0).replace("\\", "/") for m in self.path.finditer(node.value)]
            return [(where, "names") for where in found]
        return []


def _slashed(dotted: str) -> str:
    return dotted.replace(".", "/")


def check_tenancy(
    sources: list[tuple[str, ast.Module]],
    changed_paths: list[str],
    config: ValidationConfig,
    tenant: str | None,
    is_dir: Callable[[str], bool],
    system_tenant: str = "system",
) -> StageOutcome:
    """Findings for cross-tenant references in tenant-scoped files and, for a tenant's change, for files it would
    write into another tenant's folder."""
    rules = _Tenancy(config, system_tenant, is_dir)
    findings: list[Finding] = []
    if tenant is not None and tenant != system_tenant:
        for path in changed_paths:
            owner = rules.tenant_of(path)
            if owner is not None and owner != tenant:
                message = f"a change for tenant {tenant!r} writes into tenant {owner!r}'s folder"
                findings.append(Finding(path, 0, message, "TEN002"))
    scoped = 0
    for path, tree in sources:
        own = rules.tenant_of(path)
        if own is not None:
            scoped += 1
            findings.extend(rules.scan(path, tree, own))
    return StageOutcome(findings, note=f"{scoped} tenant-scoped file(s) checked")
