"""``ScriptGenerator``: lists the templates, renders scripts from them, saves them into the workspace."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Mapping
from pathlib import Path

from generators.errors import UnknownTemplateError
from generators.remediation.catalog import ISSUE_TYPES, Template, build_catalog
from generators.remediation.models import PLATFORMS, GeneratedScript, Platform, SavedScript, TemplateInfo
from generators.remediation.params import validate_parameters
from generators.remediation.render import render
from generators.remediation.save import save_script


class ScriptGenerator:
    """Remediation scripts from fixed templates. Nothing is ever executed: scripts are text for a human to run.

    ``host_platform`` (a ``sys.platform`` value) decides what ``platform="auto"`` means; it defaults to the
    platform this process runs on.
    """

    def __init__(self, *, host_platform: str | None = None) -> None:
        self._host_platform = host_platform or sys.platform
        self._templates = build_catalog()

    @property
    def issue_types(self) -> tuple[str, ...]:
        """The issue types there are templates for."""
        return ISSUE_TYPES

    def list_templates(self) -> list[TemplateInfo]:
        """Every template: each issue type for bash, then for PowerShell."""
        return [template.info for template in self._templates.values()]

    def resolve_platform(self, platform: str) -> Platform:
        """Map "auto" to this host's shell (PowerShell on Windows, bash elsewhere); check explicit choices."""
        if platform == "auto":
            return "powershell" if self._host_platform == "win32" else "bash"
        for known in PLATFORMS:
            if platform == known:
                return known
        raise UnknownTemplateError(f"unknown platform {platform!r}; use one of: auto, {', '.join(PLATFORMS)}")

    def template(self, issue_type: str, platform: str = "auto") -> Template:
        """The template for ``issue_type`` on ``platform``. Raises ``UnknownTemplateError``."""
        resolved = self.resolve_platform(platform)
        found = self._templates.get((issue_type, resolved)) if isinstance(issue_type, str) else None
        if found is None:
            shown = repr(issue_type) if len(repr(issue_type)) <= 80 else repr(issue_type)[:77] + "..."
            raise UnknownTemplateError(
                f"unknown issue_type {shown}; valid issue types: {', '.join(ISSUE_TYPES)} (see list_script_templates)"
            )
        return found

    def generate(
        self, issue_type: str, platform: str = "auto", parameters: Mapping[str, object] | None = None
    ) -> GeneratedScript:
        """Render the script for ``issue_type`` with validated parameters. Pure: nothing is written or run.

        Raises ``UnknownTemplateError`` for an unknown issue type or platform and ``ParameterError`` for unknown,
        missing or invalid parameters.
        """
        template = self.template(issue_type, platform)
        info = template.info
        values = validate_parameters(info.parameters, parameters, f"{info.issue_type} ({info.platform})", info.platform)
        content = render(info, template.body, values)
        return GeneratedScript(
            issue_type=info.issue_type,
            platform=info.platform,
            file_name=info.file_name,
            description=info.description,
            run_command=info.run_command,
            dry_run_command=info.dry_run_command,
            requires_admin=info.requires_admin,
            parameters=values,
            content=content,
            sha256=hashlib.sha256(content.encode("utf-8")).hexdigest(),
        )

    def save(self, script: GeneratedScript, scripts_dir: Path, filename: str | None = None) -> SavedScript:
        """Write ``script`` into ``scripts_dir`` (created if missing) atomically. Raises ``SaveError``."""
        return save_script(script, scripts_dir, filename)
