"""Stage 7: the tests, run with pytest on a copy of the workspace with the change applied.

The run is a subprocess in its own session (the whole process group is killed on timeout) under memory, CPU, file
size and core-dump limits, with an environment built from an allow-list (no proxies, no credentials, no API keys),
and its output captured to a file and truncated. pytest loads no plugin of the server's environment by itself
(they would change how the tests run, and importing them costs most of a short run's time): only anyio's, for async
tests. The limits are set by a small launcher that then ``exec``s pytest (``Jail.launch``), and the whole run is in
the jail (:mod:`generators.validation.jail`): no network, no other process, nothing of the
file system but the system's programs, Python and the copy. Where the jail cannot start, the stage refuses to run the
tests (JAIL001) and says why.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Collection, Mapping, Sequence
from contextlib import suppress
from pathlib import Path, PurePosixPath
from typing import IO

from generators.validation.change_tests import import_findings
from generators.validation.coverage import COVERAGE_PYTEST, coverage_args, coverage_outcome, measure
from generators.validation.lifeline import Lifeline
from generators.validation.models import Detail, Finding, StageOutcome, ValidationConfig
from generators.validation.overlay import Overlay, normalize_path
from generators.validation.scratch import SCRATCH_FOLDER
from generators.validation.tenancy import tenant_folder

_PYTEST = 'os.execv(sys.executable, [sys.executable, "-m", "pytest", *args])\n'
# The plugins a test may rely on; everything else installed beside the server stays out (PYTEST_DISABLE_PLUGIN_AUTOLOAD)
PLUGINS = ("-p", "anyio.pytest_plugin") if importlib.util.find_spec("anyio") is not None else ()


def limited_command(
    config: ValidationConfig,
    code: str,
    args: list[str],
    cwd: Path,
    writable: Path | Sequence[Path],
    lifeline: Lifeline,
) -> list[str]:
    """A command running ``code`` in an isolated Python under the sandbox's resource limits, in the jail where it is
    on (``writable`` the one folder it may write), in ``cwd``, with ``args`` in ``args`` (``os``, ``sys`` imported);
    the jail ends when the server's end of ``lifeline`` closes (pass its ``fds`` to the process)."""
    limits = [str(config.test_memory_bytes), str(config.test_cpu_seconds), str(config.test_file_size_bytes)]
    inner = config.jail.launch(code, limits, cwd, args, lifeline=lifeline)
    return config.jail.command(inner, writable, lifeline=lifeline)


def jail_refusal(config: ValidationConfig) -> str | None:
    """Why generated code may not run here (the jail cannot start), or None."""
    status = config.jail.status(config.scratch_dir)
    return None if status.ready else f"generated code is not run: {status.detail}"


KEPT_VARIABLES = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "SYSTEMROOT")
SECRET_VARIABLE = re.compile(
    r"PROXY|^AWS_|^OPENAI_|^ANTHROPIC_|^AZURE_|^GOOGLE_|^GITHUB_|^SELF_BUILDING_|KEY|TOKEN|SECRET|PASSWORD|PASSWD"
    r"|CREDENTIAL|SESSION|COOKIE",
    re.IGNORECASE,
)
ASSERT_HINT = (
    "a failing assert compares what the code gave (left) with what the test expects (right): work the expected value "
    "out by hand, then fix whichever side is wrong"
)
_SUMMARY = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)")
_FAILED = re.compile(r"^(FAILED|ERROR) (\S+?)(?:::\S+)?(?: - (.*))?$")


def foreign_tenants(workspace: Path, config: ValidationConfig, touched: Collection[str]) -> set[str]:
    """The folders of the tenants a change does not touch (``components/<tenant>`` and ``tests/<tenant>``), left out
    of the copy its tests run in: a tenant's tests see its own code and the shared code, never another tenant's. A
    change of the shared root (no tenant folder touched) keeps them all."""

    def tenant(path: str) -> str | None:
        if path.startswith("tests/"):  # tests/<tenant>/... are the tests of components/<tenant>/...
            path = f"{config.component_roots[0]}/{path.removeprefix('tests/')}"
        found = tenant_folder(path, config)
        return found[1] if found else None

    own = {t for t in map(tenant, touched) if t is not None}
    if not own:
        return set()
    skip: set[str] = set()
    for root in (PurePosixPath(r) for r in config.component_roots):
        folder = workspace / root
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            name = entry.name
            foreign = name not in own and name not in config.shared_component_packages
            if entry.is_dir() and foreign and not name.startswith((".", "_")):
                skip |= {(root / name).as_posix(), f"tests/{name}"}
    return skip


def copy_ignore(config: ValidationConfig) -> tuple[str, ...]:
    """Names a workspace copy skips: the configured ones, and the sandbox folders (a workspace that holds the data
    directory would otherwise copy the copy being made, without end)."""
    return (*config.sandbox_ignore, SCRATCH_FOLDER)


def sandbox_env(root: Path, home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test environment: a few locale and path variables, a private HOME and TMPDIR, no proxies, and ``extra``
    minus anything that looks like a proxy, credential or key."""
    env = {name: os.environ[name] for name in KEPT_VARIABLES if name in os.environ}
    env.update({k: v for k, v in (extra or {}).items() if not SECRET_VARIABLE.search(k)})
    env.update(
        HOME=str(home),
        TMPDIR=str(home),
        PYTHONPATH=str(root),
        PYTHONDONTWRITEBYTECODE="1",
        PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
        NO_PROXY="*",
        no_proxy="*",
    )
    return env


def run_tests(
    overlay: Overlay,
    config: ValidationConfig,
    test_paths: list[str],
    timeout_s: float,
    extra_env: Mapping[str, str] | None = None,
    subjects: Mapping[str, Collection[int]] | None = None,
) -> StageOutcome:
    """Run pytest on ``test_paths`` in a sandbox copy of the changed workspace; fail on failures, timeout or kill.

    With ``subjects`` (module path → its changed line numbers) the change must bring tests: no test paths, a missing
    test file or one that imports none of the subjects fails the stage, and the run is measured by coverage.py, which
    must find ``config.min_coverage_percent`` of the changed statements run. Without, no test paths skip the stage.
    """
    if not test_paths:
        if subjects is None:
            return StageOutcome(note="no test paths given: skipped", skipped=True)
        names = ", ".join(sorted(subjects)) or "the change"
        return StageOutcome([Finding("tests", 0, f"no tests were given for {names}; write tests for it", "TST006")])
    paths = [normalize_path(p) for p in test_paths]
    missing = [p for p in paths if not (overlay.is_file(p) or overlay.is_dir(p))]
    if missing:
        message = "test file does not exist in the changed workspace: write the tests of this change there"
        return StageOutcome([Finding(p, 0, message, "TST003") for p in missing])
    if subjects is not None:
        files = {p: overlay.tree(p) for p in paths if p.endswith(".py") and overlay.is_file(p)}
        unrelated = import_findings(files, list(subjects), config)
        if unrelated:
            return StageOutcome(unrelated, note="tests not run: a test file does not import the changed code")
    refused = jail_refusal(config)
    if refused is not None:
        return StageOutcome([Finding(paths[0], 0, refused, "JAIL001")], note="tests not run: no jail")
    with tempfile.TemporaryDirectory(
        prefix="validate-sandbox-", dir=config.scratch_dir, ignore_cleanup_errors=True
    ) as tmp:
        work = Path(tmp).resolve()
        root, home = work / "ws", work / "home"
        overlay.copy_tree(
            root, copy_ignore(config), foreign_tenants(overlay.workspace, config, [*overlay.change, *paths])
        )
        home.mkdir()
        args = ["-q", "-rfE", "--tb=short", "-o", "verbosity_assertions=2", "-p", "no:cacheprovider", *PLUGINS]
        args += ["--", *paths]  # the asserts' values in full (the expected one may be the mistake)
        code = _PYTEST
        if subjects:
            code, args = COVERAGE_PYTEST, [*coverage_args(work, root, subjects), *args]
        config.jail.prepare(work)
        started = time.monotonic()
        # The output goes outside the folder the tests may write: they cannot swap it.
        with tempfile.TemporaryFile() as out, config.jail.lifeline() as lifeline:
            process = subprocess.Popen(
                limited_command(config, code, args, root, work, lifeline),
                cwd=root,
                env=sandbox_env(root, home, extra_env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=lifeline.fds,
            )
            lifeline.started()
            timed_out = wait_or_kill(process, timeout_s)
            output = _tail(out, config.max_output_chars)
        outcome = _outcome(process.returncode, timed_out, output, time.monotonic() - started, timeout_s, paths)
        if not subjects or outcome.findings:
            return outcome  # failing tests are the problem to report, not what they did not run
        texts = {path: overlay.read(path) or "" for path in subjects}
        covered = coverage_outcome(measure(work, root, subjects, texts), config.min_coverage_percent)
    findings, figures = covered
    note = f"{outcome.note}; {figures['covered_statements']} of {figures['changed_statements']} changed statements run"
    note += f" ({figures['coverage_percent']:g} %)"
    return StageOutcome(findings, note=note, details={**outcome.details, **figures})


def wait_or_kill(process: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Wait for pytest; on timeout kill its whole process group. Strays are killed either way."""
    try:
        process.wait(timeout=timeout_s)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return timed_out


def _tail(handle: IO[bytes], limit: int) -> str:
    size = handle.seek(0, os.SEEK_END)
    handle.seek(max(0, size - limit * 4))
    text = handle.read().decode("utf-8", errors="replace")
    if len(text) > limit or size > limit * 4:
        return f"[... {size} bytes of output, tail shown]\n" + text[-limit:]
    return text


def _outcome(
    code: int, timed_out: bool, output: str, seconds: float, timeout_s: float, paths: list[str]
) -> StageOutcome:
    counts = {kind.rstrip("s"): 0 for kind in ("passed", "failed", "errors", "skipped")}
    summary = [line for line in output.splitlines() if _SUMMARY.search(line) and re.search(r" in [\d.]+s", line)]
    for number, kind in _SUMMARY.findall(summary[-1] if summary else ""):
        counts[kind.rstrip("s")] = int(number)
    findings = []
    for line in output.splitlines():
        match = _FAILED.match(line)
        if match:
            findings.append(Finding(match[2], 0, line, "TST001"))
    where = paths[0]
    if timed_out:
        findings.append(Finding(where, 0, f"tests did not finish within {timeout_s:g} s and were killed", "TST002"))
    elif code < 0:
        name = _signal_name(-code)
        findings.append(Finding(where, 0, f"pytest was killed by {name} (CPU or memory limit?)", "TST004"))
    elif code == 5:
        findings.append(Finding(where, 0, "no tests were collected; add tests under the given paths", "TST003"))
    elif code != 0 and not findings:
        findings.append(Finding(where, 0, f"pytest exited with code {code}", "TST001"))
    details: dict[str, Detail] = {
        "exit_code": code,
        "timed_out": timed_out,
        "seconds": round(seconds, 3),
        **counts,
        "output_tail": output,
    }
    note = (
        "timed out" if timed_out else f"{counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors"
    )
    if any(" - assert " in f.message for f in findings):  # small models often expect a wrong value
        note += f"; {ASSERT_HINT}"
    return StageOutcome(findings, note=note, details=details)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
