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
    """One parameter a template accepts, with the rule its value must follow."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="Parameter name, the key to use in `parameters`.")
    description: str = Field(description="What the parameter controls in the script.")
    kind: ParamKind = Field(description="Value kind; decides the validation pattern and range.")
    required: bool = Field(description="True when the script cannot be generated without it.")
    default: str | None = Field(description="Value used when the parameter is not given (None: no default).")
    constraint: str = Field(description="The rule a value must follow, in words (pattern, range or choices).")
    minimum: int | None = Field(None, description="Smallest allowed value for numeric kinds (None otherwise).")
    maximum: int | None = Field(None, description="Largest allowed value for numeric kinds (None otherwise).")
    choices: list[str] | None = Field(None, description="Allowed values for kind 'choice' (None otherwise).")


class TemplateInfo(BaseModel):
    """A remediation script template for one issue type on one platform."""

    model_config = ConfigDict(frozen=True)

    issue_type: str = Field(description="The issue the script addresses, e.g. cpu_high or disk_full.")
    platform: Platform = Field(description="Shell the script is written for: bash (Linux) or powershell (Windows).")
    file_name: str = Field(description="Default file name, e.g. fix_cpu_high.sh.")
    description: str = Field(description="What the script inspects, and what it changes when applied.")
    run_command: str = Field(description="Command that applies the fix (the script is a dry run without the flag).")
    dry_run_command: str = Field(description="Command that only reports what the script would do.")
    requires_admin: bool = Field(description="True when applying the fix needs root / Administrator rights.")
    parameters: list[ParameterInfo] = Field(description="Parameters the template accepts.")


class GeneratedScript(BaseModel):
    """A script rendered from a template with validated, quoted parameter values. Nothing has been run."""

    issue_type: str = Field(description="The issue the script addresses.")
    platform: Platform = Field(description="Shell the script is written for: bash or powershell.")
    file_name: str = Field(description="Suggested file name (the template's default).")
    description: str = Field(description="What the script inspects, and what it changes when applied.")
    run_command: str = Field(description="Command that applies the fix; without the flag the script is a dry run.")
    dry_run_command: str = Field(description="Command that only reports what the script would do.")
    requires_admin: bool = Field(description="True when applying the fix needs root / Administrator rights.")
    parameters: dict[str, str] = Field(description="Validated parameter values (defaults included), as strings.")
    content: str = Field(description="The full script text.")
    sha256: str = Field(description="SHA-256 of the script text encoded as UTF-8, in hex.")


class SavedScript(BaseModel):
    """A generated script written into the workspace's scripts folder."""

    path: str = Field(description="Absolute path of the saved file.")
    file_name: str = Field(description="File name inside the scripts folder.")
    sha256: str = Field(description="SHA-256 of the bytes written, in hex.")
    size_bytes: int = Field(description="Size of the file in bytes.")
    mode: str = Field(description="File permission bits in octal, e.g. 0o755 (executable bash) or 0o644.")
    overwritten: bool = Field(description="True when a file of that name was replaced.")
    issue_type: str = Field(description="The issue the script addresses.")
    platform: Platform = Field(description="Shell the script is written for: bash or powershell.")
    description: str = Field(description="What the script inspects, and what it changes when applied.")
    run_command: str = Field(description="Command that applies the fix, with the saved path.")
    dry_run_command: str = Field(description="Command that only reports what the script would do, with the saved path.")
    requires_admin: bool = Field(description="True when applying the fix needs root / Administrator rights.")
    parameters: dict[str, str] = Field(description="Validated parameter values the script was generated with.")
