"""What each template is: its description, whether applying it needs admin rights, and its parameters.

The script bodies live in ``bash_templates`` and ``powershell_templates``; ``build_catalog`` pairs them up.
"""

from __future__ import annotations

from dataclasses import dataclass

from generators.remediation.bash_templates import BASH_BODIES
from generators.remediation.models import EXTENSIONS, ParameterInfo, Platform, TemplateInfo
from generators.remediation.params import param
from generators.remediation.powershell_templates import POWERSHELL_BODIES

ISSUE_TYPES = ("cpu_high", "memory_high", "disk_full", "process_memory_high", "service_restart", "disk_health")


@dataclass(frozen=True)
class Template:
    """A template's metadata and the body that follows the generated preamble."""

    info: TemplateInfo
    body: str


@dataclass(frozen=True)
class _Spec:
    description: str
    requires_admin: bool
    parameters: list[ParameterInfo]


def _top(default: str) -> ParameterInfo:
    return param("top", "int", "How many processes or folders to list.", default=default, minimum=1, maximum=50)


_CPU_PID = param(
    "pid",
    "pid",
    "Process to lower the priority of. Without it, applying acts on the processes above threshold_percent.",
)
_THRESHOLD = param(
    "threshold_percent",
    "percent",
    "CPU use (percent of one core, over 1 s) that makes a process a candidate.",
    default="80",
)
_RESTART = param("restart_service", "service_name", "Service to restart when applying, e.g. a leaking one (optional).")
_CLEAN_DIR = param(
    "clean_dir", "cleanup_dir", "Folder whose files older than older_than_days are deleted when applying (optional)."
)
_OLDER = param(
    "older_than_days", "days", "Age in days (last modification) past which clean_dir files go.", default="14"
)
_PID = param(
    "pid", "pid", "Process to inspect and, when applying, terminate if its memory exceeds max_rss.", required=True
)
_MAX_RSS = param(
    "max_rss", "size", "Resident memory (working set on Windows) above which the process is terminated.", required=True
)
_GRACE = param(
    "grace_seconds", "int", "Seconds to wait for a graceful exit before forcing.", default="10", minimum=1, maximum=300
)
_SERVICE = param("service", "service_name", "Service to check and restart, e.g. nginx or Spooler.", required=True)
_LOG_LINES = param("log_lines", "int", "Recent log lines or events to show.", default="20", minimum=0, maximum=200)
_MIN_FREE = param("min_free_percent", "percent", "Warn when free space falls below this percent.", default="10")

_BASH: dict[str, _Spec] = {
    "cpu_high": _Spec(
        "Measures per-process CPU use over one second and lists the busiest processes; applying renices the given "
        "pid (or the processes above threshold_percent) to nice_level. Root is needed for other users' processes.",
        False,
        [
            _top("10"),
            _CPU_PID,
            _THRESHOLD,
            param("nice_level", "int", "Niceness to set.", default="10", minimum=1, maximum=19),
        ],
    ),
    "memory_high": _Spec(
        "Shows memory, swap and pressure, the largest processes and recent OOM kills; applying restarts "
        "restart_service and, with drop_caches=yes, drops the page cache. Needs root to apply.",
        True,
        [
            _top("10"),
            _RESTART,
            param(
                "drop_caches", "choice", "Drop the clean page cache when applying.", default="no", choices=["yes", "no"]
            ),
        ],
    ),
    "disk_full": _Spec(
        "Shows file-system and inode use and the largest folders under scan_path; applying deletes files older than "
        "older_than_days in clean_dir and vacuums the systemd journal to journal_max_size. Needs root to apply.",
        True,
        [
            param("scan_path", "path", "Folder to look for the largest subfolders in (same file system).", default="/"),
            _top("15"),
            _CLEAN_DIR,
            _OLDER,
            param("journal_max_size", "size", "Vacuum the systemd journal down to this size when applying (optional)."),
        ],
    ),
    "process_memory_high": _Spec(
        "Inspects one process (memory, command line, age); applying sends it SIGTERM if its resident memory "
        "exceeds max_rss, then SIGKILL after grace_seconds. Root is needed for other users' processes.",
        False,
        [_PID, _MAX_RSS, _GRACE],
    ),
    "service_restart": _Spec(
        "Shows a systemd service's state and recent journal lines; applying restarts it and checks it came back "
        "active. Needs root to apply.",
        True,
        [_SERVICE, _LOG_LINES],
    ),
    "disk_health": _Spec(
        "Read-only checks: space and inodes on scan_path, block devices, kernel I/O errors and SMART health "
        "(smartctl, when installed); applying only starts a short SMART self-test on device. Root gives SMART data.",
        True,
        [
            param("scan_path", "path", "File system to check space and inodes on.", default="/"),
            param(
                "device", "device", "Disk to check and self-test, e.g. /dev/sda (default: all disks smartctl finds)."
            ),
            _MIN_FREE,
        ],
    ),
}

_POWERSHELL: dict[str, _Spec] = {
    "cpu_high": _Spec(
        "Measures per-process CPU use over one second and lists the busiest processes; applying lowers the "
        "priority class of the given pid (or the processes above threshold_percent). Run elevated for "
        "other users' processes.",
        False,
        [
            _top("10"),
            _CPU_PID,
            _THRESHOLD,
            param(
                "priority", "choice", "Priority class to set.", default="BelowNormal", choices=["BelowNormal", "Idle"]
            ),
        ],
    ),
    "memory_high": _Spec(
        "Shows physical and commit memory and the processes with the largest working sets; applying restarts "
        "restart_service. Run elevated to apply.",
        True,
        [_top("10"), _RESTART],
    ),
    "disk_full": _Spec(
        "Shows drive usage and the largest folders under scan_path; applying deletes files older than "
        "older_than_days in clean_dir (links are not followed). Run elevated for system folders.",
        True,
        [
            param("scan_path", "path", "Folder to look for the largest subfolders in.", default="C:/"),
            _top("15"),
            _CLEAN_DIR,
            _OLDER,
        ],
    ),
    "process_memory_high": _Spec(
        "Inspects one process (working set, private bytes, handles); applying asks it to close if its working set "
        "exceeds max_rss, then stops it after grace_seconds. Run elevated for other users' processes.",
        False,
        [_PID, _MAX_RSS, _GRACE],
    ),
    "service_restart": _Spec(
        "Shows a Windows service's status and recent Service Control Manager events; applying restarts it and "
        "checks it is running again. Run elevated to apply.",
        True,
        [_SERVICE, _LOG_LINES],
    ),
    "disk_health": _Spec(
        "Read-only checks: free space on scan_path's drive, physical disk health and reliability counters, recent "
        "disk errors in the System log; applying only runs an online volume scan (Repair-Volume -Scan).",
        True,
        [param("scan_path", "path", "Drive or folder whose volume is checked.", default="C:/"), _MIN_FREE],
    ),
}


def _commands(platform: Platform, file_name: str) -> tuple[str, str]:
    if platform == "bash":
        return f"bash {file_name} --apply", f"bash {file_name}"
    return f"pwsh -File {file_name} -Apply", f"pwsh -File {file_name}"


def build_catalog() -> dict[tuple[str, Platform], Template]:
    """Every template, keyed by (issue_type, platform), in ISSUE_TYPES order, bash first."""
    catalog: dict[tuple[str, Platform], Template] = {}
    sources: tuple[tuple[Platform, dict[str, _Spec], dict[str, str]], ...] = (
        ("bash", _BASH, BASH_BODIES),
        ("powershell", _POWERSHELL, POWERSHELL_BODIES),
    )
    for issue_type in ISSUE_TYPES:
        for platform, specs, bodies in sources:
            spec = specs[issue_type]
            file_name = f"fix_{issue_type}{EXTENSIONS[platform]}"
            run_command, dry_run_command = _commands(platform, file_name)
            info = TemplateInfo(
                issue_type=issue_type,
                platform=platform,
                file_name=file_name,
                description=spec.description,
                run_command=run_command,
                dry_run_command=dry_run_command,
                requires_admin=spec.requires_admin,
                parameters=spec.parameters,
            )
            catalog[(issue_type, platform)] = Template(info=info, body=bodies[issue_type])
    return catalog
