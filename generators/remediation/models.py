"""Typed templates, generated scripts and saved scripts. Every field is described: agents read these schemas."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Platform = Literal["bash", "powershell"]
PlatformChoice = Literal["auto", "bash", "powershell"]
ParamKind = Literal[
    "pid", "process_name", "service_name", "path", "cleanup_dir", "device", "size", "days", "int", "percent", "choice"
]
PLATFORMS: tuple[Platform, ...] = ("bash", "powershell")
EXTENSIONS: dict[Platform, str] = {"bash": ".sh", "powershell": ".ps1"}


class ParameterInfo(BaseModel):
    """One parameter a template accepts."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="Key to use in `parameters`.")
    description: str = Field(description="What it controls.")
    kind: ParamKind = Field(description="Value kind.")
    required: bool = Field(description="True: it must be given.")
    default: str | None = Field(description="Default value (null: none).")
    constraint: str = Field(description="The rule a value must follow.")
    minimum: int | None = Field(None, description="Minimum, for numbers.")
    maximum: int | None = Field(None, description="Maximum, for numbers.")
    choices: list[str] | None = Field(None, description="Allowed values, for kind 'choice'.")


class TemplateInfo(BaseModel):
    """A remediation script template for one issue type and platform."""

    model_config = ConfigDict(frozen=True)

    issue_type: str = Field(description="The issue it fixes, e.g. disk_full.")
    platform: Platform = Field(description="Shell: bash (Linux) or powershell (Windows).")
    file_name: str = Field(description="Default file name.")
    description: str = Field(description="What it checks, and changes when applied.")
    run_command: str = Field(description="Command that applies the fix.")
    dry_run_command: str = Field(description="Command for a dry run.")
    requires_admin: bool = Field(description="True: applying needs root / Administrator.")
    parameters: list[ParameterInfo] = Field(description="Its parameters.")


class GeneratedScript(BaseModel):
    """A script rendered from a template with validated, quoted parameter values. Nothing has been run."""

    issue_type: str = Field(description="The issue it fixes.")
    platform: Platform = Field(description="Shell: bash or powershell.")
    file_name: str = Field(description="Suggested file name.")
    description: str = Field(description="What it checks, and changes when applied.")
    run_command: str = Field(description="Command that applies the fix.")
    dry_run_command: str = Field(description="Command for a dry run.")
    requires_admin: bool = Field(description="True: applying needs root / Administrator.")
    parameters: dict[str, str] = Field(description="Parameter values used (defaults included).")
    content: str = Field(description="The full script text.")
    sha256: str = Field(description="SHA-256 of the UTF-8 text, hex.")


class SavedScript(BaseModel):
    """A generated script written into the workspace's scripts folder."""

    path: str = Field(description="Absolute path.")
    file_name: str = Field(description="File name.")
    sha256: str = Field(description="SHA-256 of the bytes, hex.")
    size_bytes: int = Field(description="Size, bytes.")
    mode: str = Field(description="Permission bits in octal, e.g. 0o755.")
    overwritten: bool = Field(description="True: a file was replaced.")
    issue_type: str = Field(description="The issue it fixes.")
    platform: Platform = Field(description="Shell: bash or powershell.")
    description: str = Field(description="What it checks, and changes when applied.")
    run_command: str = Field(description="Command that applies the fix.")
    dry_run_command: str = Field(description="Command for a dry run.")
    requires_admin: bool = Field(description="True: applying needs root / Administrator.")
    parameters: dict[str, str] = Field(description="Parameter values used.")
