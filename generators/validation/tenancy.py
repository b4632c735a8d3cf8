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


class _Tenancy:
    def __init__(self, config: ValidationConfig, system_tenant: str, is_dir: Callable[[str], bool]) -> None:
        self.config, self.is_dir = config, is_dir
        self.roots = {PurePosixPath(r).as_posix() for r in config.component_roots}
        self.system_tenant = system_tenant
        names = "|".join(re.escape(r.replace("/", ".")) for r in sorted(self.roots))
        self.pattern = re.compile(rf"(?<![\w.])(?:{names})[./\\]([A-Za-z_]\w*)") if names else None

    def locate(self, path: str) -> tuple[str, str] | None:
        """``(component root, tenant)`` when ``path`` lies in a tenant's folder (``components/<tenant>/...``)."""
        parts = PurePosixPath(path).parts
        for root in self.roots:
            root_parts = PurePosixPath(root).parts
            if len(parts) > len(root_parts) + 1 and parts[: len(root_parts)] == root_parts:
                tenant = parts[len(root_parts)]
                return None if tenant in self.config.shared_component_packages else (root, tenant)
        return None

    def tenant_of(self, path: str) -> str | None:
        """The tenant whose folder holds ``path``, if any."""
        found = self.locate(path)
        return found[1] if found else None

    def other_tenant(self, dotted: str, own: str) -> str | None:
        """The foreign tenant package (a folder under a component root) ``dotted`` lies in, if it names one."""
        found = self.locate(dotted.replace(".", "/") + "/_")
        if found is None or found[1] == own or not self.is_dir(f"{found[0]}/{found[1]}"):
            return None
        return found[1]

    def scan(self, path: str, tree: ast.Module, own: str) -> list[Finding]:
        seen: dict[tuple[int, str, str], Finding] = {}
        for node in ast.walk(tree):
            for dotted, how in self._references(path, node):
                other = self.other_tenant(dotted, own)
                if other is not None and isinstance(node, ast.expr | ast.stmt):
                    message = f"tenant {own!r} code {how} tenant {other!r}'s package; use only its own or shared ones"
                    seen.setdefault((node.lineno, other, how), Finding(path, node.lineno, message, "TEN001"))
        return list(seen.values())

    def _references(self, path: str, node: ast.AST) -> list[tuple[str, str]]:
        if isinstance(node, ast.Import):
            return [(alias.name, "imports") for alias in node.names]
        if isinstance(node, ast.ImportFrom):
            module = absolute_module(path, node, self.config)
            if module is None:
                return []
            return [(f"{module}.{alias.name}" if module else alias.name, "imports") for alias in node.names]
        if isinstance(node, ast.Attribute):
            dotted = dotted_name(node, {})
            return [(dotted, "names")] if dotted else []
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and self.pattern is not None:
            return [
                (m.group(0).replace("/", ".").replace("\\", "."), "names") for m in self.pattern.finditer(node.value)
            ]
        return []


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
