"""Parameter specs, strict validation per kind, and quoting for each shell.

Validation is the first line of defence: a value that passes contains no shell metacharacters at all. Quoting
(``bash_quote`` / ``powershell_quote``) is the second: even a value that slipped through stays one literal word.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Mapping

from generators.errors import ParameterError
from generators.remediation.models import ParameterInfo, ParamKind, Platform

PID_MAX = 4_194_304  # the largest pid_max Linux allows (2**22)
INTEGER_KINDS: frozenset[ParamKind] = frozenset({"pid", "int", "days", "percent"})
_RANGES: dict[ParamKind, tuple[int, int]] = {"pid": (1, PID_MAX), "days": (1, 3650), "percent": (1, 100)}

_DIGITS = re.compile(r"[0-9]{1,10}")
# Names may not start with '-' so that no value can be read as a command-line option.
_PROCESS_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
_SERVICE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9@._-]{0,127}")
_DEVICE = re.compile(r"/dev/[A-Za-z0-9][A-Za-z0-9/_-]{0,63}")
_SIZE = re.compile(r"[1-9][0-9]{0,5}[KMGT]")
_PATH_ALLOWED = re.compile(r"[A-Za-z0-9/._+,=@: -]+")
_WINDOWS_ABSOLUTE = re.compile(r"[A-Za-z]:/")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
PATH_MAX = 1024
_PATH_RULE = "letters, digits, spaces and / . _ - + , = @ :"

# clean_dir deletes old files: refuse system trees outright, and folders whose old files are not disposable.
_PROTECTED_TREES = (
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin", "/snap", "/sys",
    "/usr", "/var/lib", "c:/windows", "c:/program files", "c:/programdata",
)  # fmt: skip
_PROTECTED_EXACT = frozenset({"/", "/home", "/mnt", "/media", "/opt", "/root", "/srv", "/var", "c:", "c:/users"})

_KIND_RULES: dict[ParamKind, str] = {
    "pid": f"a process id: an integer from 1 to {PID_MAX}",
    "process_name": "a process name: 1-64 of A-Z a-z 0-9 . _ - (not starting with . or -)",
    "service_name": "a service name: 1-128 of A-Z a-z 0-9 @ . _ - (not starting with @ . or -)",
    "path": f"an absolute path (bash: /...; PowerShell: /... or C:/..., forward slashes) using only {_PATH_RULE}",
    "cleanup_dir": "an absolute path as for 'path', and not a system folder such as /, /usr, /etc or C:/Windows",
    "device": "a block device path: /dev/ followed by A-Z a-z 0-9 / _ -",
    "size": "a size: 1-999999 followed by a unit K, M, G or T, e.g. 500M or 2G",
}


def constraint_text(kind: ParamKind, minimum: int | None, maximum: int | None, choices: list[str] | None) -> str:
    """The rule for a kind, in words, as shown to agents."""
    if kind == "choice":
        return "one of: " + ", ".join(choices or [])
    if kind in INTEGER_KINDS and kind != "pid":
        return f"an integer from {minimum} to {maximum}"
    return _KIND_RULES[kind]


def param(
    name: str,
    kind: ParamKind,
    description: str,
    *,
    required: bool = False,
    default: str | None = None,
    minimum: int | None = None,
    maximum: int | None = None,
    choices: list[str] | None = None,
) -> ParameterInfo:
    """Build a parameter spec; numeric kinds get their standard range unless one is given."""
    if kind in _RANGES:
        low, high = _RANGES[kind]
        minimum = low if minimum is None else minimum
        maximum = high if maximum is None else maximum
    return ParameterInfo(
        name=name,
        description=description,
        kind=kind,
        required=required,
        default=default,
        constraint=constraint_text(kind, minimum, maximum, choices),
        minimum=minimum,
        maximum=maximum,
        choices=choices,
    )


def _show(value: object) -> str:
    """The value as it appears in an error message: repr (so newlines show as \\n), shortened."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _fail(spec: ParameterInfo, value: object, detail: str | None = None) -> ParameterError:
    rule = detail or f"must be {spec.constraint}"
    return ParameterError(f"parameter '{spec.name}' {rule}, got {_show(value)}")


def _integer(spec: ParameterInfo, value: object) -> str:
    if isinstance(value, bool):
        raise _fail(spec, value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value):
        number = int(value)
    else:
        raise _fail(spec, value)
    low, high = spec.minimum or 0, spec.maximum or 0
    if not low <= number <= high:
        raise _fail(spec, value, f"must be between {low} and {high}")
    return str(number)


def _path(spec: ParameterInfo, value: str, platform: Platform) -> str:
    if _CONTROL.search(value):
        raise _fail(spec, value, "must not contain control characters (newline, tab, ...)")
    if not _PATH_ALLOWED.fullmatch(value):
        bad = sorted({c for c in value if not _PATH_ALLOWED.fullmatch(c)})
        listed = " ".join(repr(c) for c in bad)
        raise _fail(spec, value, f"contains characters that are not allowed ({listed}); use only {_PATH_RULE}")
    if len(value) > PATH_MAX:
        raise _fail(spec, value, f"must be at most {PATH_MAX} characters")
    absolute = value.startswith("/") or (platform == "powershell" and _WINDOWS_ABSOLUTE.match(value) is not None)
    if not absolute:
        where = "/ or a drive like C:/" if platform == "powershell" else "/"
        raise _fail(spec, value, f"must be an absolute path starting with {where}")
    if ".." in value.split("/"):
        raise _fail(spec, value, "must not contain '..' segments; give the real absolute path")
    if spec.kind == "cleanup_dir":
        _refuse_system_dir(spec, value)
    return value


def _refuse_system_dir(spec: ParameterInfo, value: str) -> None:
    folded = posixpath.normpath(re.sub("/+", "/", value)).lower()
    if _WINDOWS_ABSOLUTE.match(folded):
        folded = "c:" + folded[2:]  # any drive letter is guarded like C:
    folded = folded.rstrip("/") or "/"
    in_tree = any(folded == tree or folded.startswith(tree + "/") for tree in _PROTECTED_TREES)
    if in_tree or folded in _PROTECTED_EXACT:
        raise _fail(
            spec,
            value,
            "must not be a system folder (its old files are not disposable); name the application's own log "
            "or cache folder, e.g. /var/log/myapp or C:/Logs/MyApp",
        )


def validate_value(spec: ParameterInfo, value: object, platform: Platform) -> str:
    """Check ``value`` against the spec's kind; return it normalised, as a string. Raises ``ParameterError``."""
    if spec.kind in INTEGER_KINDS:
        return _integer(spec, value)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _fail(spec, value)
    text = str(value)
    if spec.kind in ("path", "cleanup_dir"):
        return _path(spec, text, platform)
    if spec.kind == "choice":
        for choice in spec.choices or []:
            if text.lower() == choice.lower():
                return choice
        raise _fail(spec, value)
    if spec.kind == "size":
        text = text.upper()
    pattern = {"process_name": _PROCESS_NAME, "service_name": _SERVICE_NAME, "device": _DEVICE, "size": _SIZE}
    if not pattern[spec.kind].fullmatch(text):
        raise _fail(spec, value)
    return text


def validate_parameters(
    specs: list[ParameterInfo], given: Mapping[str, object] | None, where: str, platform: Platform
) -> dict[str, str]:
    """Validate every given value and fill in defaults. Unknown names and missing required ones are rejected.

    ``where`` names the template in messages (e.g. "cpu_high (bash)"). A value of None counts as not given.
    """
    given = {} if given is None else given
    if not isinstance(given, Mapping):
        raise ParameterError(f"parameters must be an object mapping parameter names to values, got {_show(given)}")
    by_name = {spec.name: spec for spec in specs}
    known = ", ".join(by_name) or "none"
    unknown = [_show(name) for name in given if name not in by_name]
    if unknown:
        raise ParameterError(f"unknown parameter(s) {', '.join(unknown)} for {where}; known parameters: {known}")
    present = {name: value for name, value in given.items() if value is not None}
    missing = [spec for spec in specs if spec.required and spec.name not in present]
    if missing:
        wanted = "; ".join(f"'{spec.name}' ({spec.description} Must be {spec.constraint}.)" for spec in missing)
        raise ParameterError(f"missing required parameter(s) for {where}: {wanted}")
    values: dict[str, str] = {}
    errors: list[str] = []
    for spec in specs:
        if spec.name in present:
            try:
                values[spec.name] = validate_value(spec, present[spec.name], platform)
            except ParameterError as exc:
                errors.append(str(exc))
        elif spec.default is not None:
            values[spec.name] = spec.default
    if errors:
        raise ParameterError("; ".join(errors))
    return values


def bash_quote(value: str) -> str:
    """Quote ``value`` as one literal bash word."""
    return shlex.quote(value)


def powershell_quote(value: str) -> str:
    """Quote ``value`` as a literal PowerShell string: single quotes, with every quote character doubled.

    PowerShell also treats the typographic single quotes as quote characters, so those are doubled too.
    """
    return "'" + re.sub("['\u2018\u2019\u201a\u201b]", lambda match: match.group(0) * 2, value) + "'"
