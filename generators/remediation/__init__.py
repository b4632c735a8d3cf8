"""Remediation scripts (bash and PowerShell) from fixed, reviewed templates.

Parameters are validated against a strict pattern per kind and then quoted for their shell; scripts are a dry
run unless started with ``--apply`` / ``-Apply``. Nothing here ever runs a script.
"""

from generators.errors import ParameterError, SaveError, UnknownTemplateError
from generators.remediation.generator import ScriptGenerator
from generators.remediation.models import (
    GeneratedScript,
    ParameterInfo,
    ParamKind,
    Platform,
    PlatformChoice,
    SavedScript,
    TemplateInfo,
)

__all__ = [
    "GeneratedScript",
    "ParamKind",
    "ParameterError",
    "ParameterInfo",
    "Platform",
    "PlatformChoice",
    "SaveError",
    "SavedScript",
    "ScriptGenerator",
    "TemplateInfo",
    "UnknownTemplateError",
]
