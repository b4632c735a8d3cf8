"""The validation pipeline: each stage catches its bad case and passes clean code; the sandbox bounds tests."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from generators.validation import (
    StageName,
    ValidationConfig,
    ValidationInputError,
    ValidationPipeline,
    ValidationReport,
)
from generators.validation.quality import complexity
from tests.polling import eventually_sync

STATIC = ("syntax", "imports", "security", "quality", "tenancy")
CLEAN = '''\
"""A clean component."""

import json
import os.path
import subprocess
from email.mime import text

from components.shop.utils import helper

from .utils import helper as same_helper


def run(name: str) -> int:
    """Run a command safely and count."""
    subprocess.run(["ls", name], check=False, shell=False)
    with open("data/out.txt", "w", encoding="utf-8") as handle:
        handle.write(json.dumps({"a": os.path.basename(name), "t": text.__name__}))
    return helper() + same_helper()
'''


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    files = {
        "components/__init__.py": "",
        "components/shop/__init__.py": "",
        "components/shop/utils.py": "def helper() -> int:\n    return 1\n",
        "components/bank/__init__.py": "",
        "components/bank/ledger.py": "BALANCE = 0\n",
        "components/shared/__init__.py": "",
        "components/shared/money.py": "def cents(x: float) -> int:\n    return round(x * 100)\n",
        # Imported by name only: running it would leave a marker file.
        "components/shop/trap.py": "open('TRAP_RAN', 'w').close()\nVALUE = 1\n",
    }
    for rel, text in files.items():
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_text(text, encoding="utf-8")
    return ws


def validate(ws: Path, code: str, path: str = "components/shop/new.py", **kwargs: object) -> ValidationReport:
    kwargs.setdefault("stages", STATIC)
    return ValidationPipeline().run(ws, {path: textwrap.dedent(code)}, **kwargs)  # type: ignore[arg-type]


def rules(report: ValidationReport, stage: str) -> list[str]:
    return [f.rule for f in report.stage(stage).findings if f.severity == "error"]  # type: ignore[arg-type]


def test_clean_code_passes_every_static_stage(workspace: Path) -> None:
    report = validate(workspace, CLEAN)
    assert [s.status for s in report.stages] == ["passed"] * 5, report.render()
    assert report.passed


def test_syntax_error_is_reported_and_expensive_stages_are_skipped(workspace: Path) -> None:
    report = validate(workspace, "def f(:\n    pass\n", stages=None, test_paths=["components"])
    assert report.stage("syntax").status == "failed"
    assert report.stage("syntax").findings[0].line == 1
    assert report.stage("types").status == "skipped"
    assert report.stage("tests").status == "skipped"
    assert "syntax failed" in report.stage("tests").note
    assert not report.passed


def test_compile_time_errors_that_parse_are_caught(workspace: Path) -> None:
    report = validate(workspace, "x = 1\nreturn x\n")
    assert rules(report, "syntax") == ["SYN001"]
    assert report.stage("syntax").findings[0].line == 2


@pytest.mark.parametrize(
    "code",
    [
        "import no_such_package_xyz\n",
        "import json.no_such_submodule\n",
        "from email.no_such import thing\n",
        "from components.shop.utils import missing_name\n",
        "from .nothing_here import x\n",
        "from ...... import x\n",
    ],
)
def test_unresolvable_imports_fail(workspace: Path, code: str) -> None:
    assert rules(validate(workspace, code), "imports") == ["IMP001"]


def test_imports_resolve_against_the_change_and_never_run_code(workspace: Path) -> None:
    change = {
        "components/shop/new.py": "from components.shop.fresh import VALUE\nimport components.shop.trap\n",
        "components/shop/fresh.py": "VALUE = 2\n",
    }
    report = ValidationPipeline().run(workspace, change, stages=["imports"])
    assert report.passed, report.render()
    assert not (workspace / "TRAP_RAN").exists() and not Path("TRAP_RAN").exists()


def test_guarded_optional_import_is_only_a_warning(workspace: Path) -> None:
    report = validate(workspace, "try:\n    import orjson_nope\nexcept ImportError:\n    import json\n")
    assert report.stage("imports").status == "passed"
    assert [f.severity for f in report.stage("imports").findings] == ["warning"]


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        ("x = eval(input())\n", "SEC001"),
        ("exec('print(1)')\n", "SEC001"),
        ("def f(s: str) -> object:\n    return compile(s, 'x', 'exec')\n", "SEC002"),
        ("import os\nos.system('ls')\n", "SEC003"),
        ("from os import popen\npopen('ls')\n", "SEC003"),
        ("import subprocess as sp\nsp.run('ls', shell=True)\n", "SEC004"),
        ("from subprocess import Popen\nPopen('ls', shell=1)\n", "SEC004"),
        ("import pickle\npickle.loads(b'')\n", "SEC005"),
        ("import marshal\nmarshal.load(open('f', 'rb'))\n", "SEC005"),
        ("import shelve\nshelve.open('db')\n", "SEC005"),
        ("import yaml\nyaml.load('a')\n", "SEC005"),
        ("name = 'os'\n__import__(name)\n", "SEC006"),
        ("import importlib\nimportlib.import_module('x' + 'y')\n", "SEC006"),
        ("open('/etc/x', 'w')\n", "SEC007"),
        ("open('../../outside.txt', mode='a')\n", "SEC007"),
        ("from pathlib import Path\nPath('/etc/passwd').write_text('x')\n", "SEC007"),
        ("import shutil\nshutil.rmtree('/home')\n", "SEC007"),
        ("import socket\n", "SEC008"),
        ("from urllib import request\n", "SEC008"),
        ("import http.client\n", "SEC008"),
        ("import importlib\nimportlib.import_module('socket')\n", "SEC008"),
    ],
)
def test_security_policy_flags(workspace: Path, code: str, rule: str) -> None:
    assert rule in rules(validate(workspace, code), "security")


@pytest.mark.parametrize(
    "code",
    [
        "import ast\nast.literal_eval('1')\n",
        "code = compile('1 + 1', 'x', 'eval')\n",
        "import subprocess\nsubprocess.run(['ls'], shell=False)\n",
        "import importlib\nimportlib.import_module('json')\n",
        "open('/etc/hosts').read()\n",
        "open('data/x.txt', 'w')\n",
        "from urllib.parse import urlsplit\n",
        "import yaml\nyaml.load('a', Loader=yaml.SafeLoader)\n",
    ],
)
def test_security_policy_passes_safe_code(workspace: Path, code: str) -> None:
    assert rules(validate(workspace, code, stages=["security"]), "security") == []


def test_network_allowed_by_component_type(workspace: Path) -> None:
    code = "import socket\nimport urllib.request\n"
    assert rules(validate(workspace, code, stages=["security"]), "security") == ["SEC008", "SEC008"]
    report = validate(workspace, code, stages=["security"], component_type="http_client")
    assert report.stage("security").status == "passed"


def test_writes_inside_the_workspace_by_absolute_path_pass(workspace: Path) -> None:
    code = f"open({str(workspace.resolve() / 'out.txt')!r}, 'w')\n"
    assert rules(validate(workspace, code, stages=["security"]), "security") == []


@pytest.mark.parametrize(
    "code",
    [
        "from components.bank import ledger\n",
        "import components.bank.ledger as l\n",
        "from ..bank.ledger import BALANCE\n",
        "import components\nx = components.bank.ledger.BALANCE\n",
        "import importlib\nmod = importlib.import_module('components.bank.ledger')\n",
        "PATH = 'components/bank/ledger.py'\n",
    ],
)
def test_cross_tenant_references_fail(workspace: Path, code: str) -> None:
    assert "TEN001" in rules(validate(workspace, code), "tenancy")


@pytest.mark.parametrize("tenant", ["acme.eu", "acme-eu", "9lives"])
def test_a_path_into_a_tenant_folder_of_any_tenant_id_fails(workspace: Path, tenant: str) -> None:
    """A tenant id may hold '.', '-' or start with a digit; a path into its folder is still another tenant's."""
    (workspace / "components" / tenant).mkdir()
    (workspace / "components" / tenant / "books.py").write_text("X = 1\n", encoding="utf-8")
    for code in (f"PATH = 'components/{tenant}/books.py'\n", f"PATH = r'components\\{tenant}\\books.py'\n"):
        assert rules(validate(workspace, code, tenant="shop"), "tenancy") == ["TEN001"], code


def test_own_and_shared_packages_are_allowed(workspace: Path) -> None:
    code = "from components.shared.money import cents\nfrom components.shop.utils import helper\nfrom . import utils\n"
    report = validate(workspace, code, tenant="shop")
    assert report.stage("tenancy").status == "passed"
    assert report.stage("tenancy").note == "1 tenant-scoped file(s) checked"


def test_tenant_change_may_not_write_into_another_tenant(workspace: Path) -> None:
    report = validate(workspace, "X = 1\n", path="components/bank/evil.py", tenant="shop")
    assert rules(report, "tenancy") == ["TEN002"]
    assert validate(workspace, "X = 1\n", path="components/bank/ok.py", tenant="system").passed


def monster(branches: int) -> str:
    body = "".join(f"    if x == {i}:\n        return {i}\n" for i in range(branches))
    return f'def monster(x: int) -> int:\n    """Too many branches."""\n{body}    return -1\n'


def test_complexity_monster_fails_quality(workspace: Path) -> None:
    report = validate(workspace, monster(30))
    assert rules(report, "quality") == ["QUA001"]
    assert "complexity 31" in report.stage("quality").findings[0].message


def test_moderate_complexity_and_missing_docstrings_are_warnings(workspace: Path) -> None:
    code = monster(12).replace('    """Too many branches."""\n', "") + "class Thing:\n    pass\n"
    report = validate(workspace, code)
    quality = report.stage("quality")
    assert quality.status == "passed"
    assert sorted(f.rule for f in quality.findings) == ["QUA001", "QUA003", "QUA003"]
    assert {f.severity for f in quality.findings} == {"warning"}


def test_very_long_function_fails_quality(workspace: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(160))
    report = validate(workspace, f'def long() -> None:\n    """Long."""\n{body}')
    assert rules(report, "quality") == ["QUA002"]
    config = ValidationConfig(length_fail=200)
    lenient = ValidationPipeline(config).run(workspace, {"a.py": f"def long() -> None:\n{body}"}, stages=["quality"])
    assert lenient.stage("quality").status == "passed"


def test_complexity_counts_decisions() -> None:
    import ast

    tree = ast.parse("def f(a, b):\n    if a and b:\n        return [x for x in a if x]\n    while b:\n        pass\n")
    function = tree.body[0]
    assert isinstance(function, ast.FunctionDef)
    assert complexity(function) == 1 + 1 + 1 + 2 + 1


def test_invalid_requests_raise(workspace: Path) -> None:
    pipeline = ValidationPipeline()
    for bad in ("../x.py", "/etc/x.py", ".git/config", "a\\b.py"):
        with pytest.raises(ValidationInputError):
            pipeline.run(workspace, {bad: "x = 1\n"})
    with pytest.raises(ValidationInputError, match="unknown validation stage"):
        pipeline.run(workspace, {"a.py": ""}, stages=["lint"])  # type: ignore[list-item]
    with pytest.raises(ValidationInputError, match="not a directory"):
        pipeline.run(workspace / "missing", {"a.py": ""})


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.mark.slow
def test_types_stage_runs_mypy_on_annotated_files_only(workspace: Path) -> None:
    before = tree_digest(workspace)
    bad = "def f(x: int) -> str:\n    return x\n"
    report = validate(workspace, bad, stages=["types"])
    assert report.stage("types").status == "failed", report.render()
    assert [(f.line, f.rule) for f in report.stage("types").findings] == [(2, "mypy:return-value")]
    good = "from components.shop.utils import helper\n\n\ndef f(x: int) -> int:\n    return x + helper()\n"
    assert validate(workspace, good, stages=["types"]).stage("types").status == "passed"
    untyped = validate(workspace, "def f(x):\n    return x\n", stages=["types"]).stage("types")
    assert untyped.status == "skipped" and "no annotated" in untyped.note
    assert tree_digest(workspace) == before


def test_report_renders_and_serialises(workspace: Path) -> None:
    report = validate(workspace, "import socket\nx = eval('1')\n")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["passed"] is False
    assert [s["name"] for s in data["stages"]] == list(STATIC)
    text = report.render()
    assert "components/shop/new.py:2: [SEC001]" in text and text.startswith("validation FAILED")


# --- the sandboxed test stage ---------------------------------------------------------------------------------


def run_sandbox(ws: Path, test_code: str, **kwargs: object) -> ValidationReport:
    change = {"components/shop/test_generated.py": textwrap.dedent(test_code)}
    config = kwargs.pop("config", None)
    pipeline = ValidationPipeline(config)  # type: ignore[arg-type]
    return pipeline.run(ws, change, stages=["tests"], test_paths=["components/shop/test_generated.py"], **kwargs)  # type: ignore[arg-type]


@pytest.mark.slow
def test_sandbox_reports_passes_and_failures(workspace: Path) -> None:
    code = """
    from components.shop.utils import helper

    def test_ok():
        assert helper() == 1

    def test_bad():
        assert helper() == 2
    """
    report = run_sandbox(workspace, code)
    stage = report.stage("tests")
    assert stage.status == "failed"
    assert stage.details["passed"] == 1 and stage.details["failed"] == 1
    assert [f.path for f in stage.findings] == ["components/shop/test_generated.py"]
    assert "test_bad" in stage.findings[0].message
    ok = run_sandbox(workspace, "def test_ok():\n    pass\n").stage("tests")
    assert ok.status == "passed" and ok.details["passed"] == 1 and ok.details["timed_out"] is False


@pytest.mark.slow
def test_endless_test_is_killed_with_its_children(workspace: Path, tmp_path: Path) -> None:
    marker = f"endless-{uuid.uuid4().hex}"  # the child's command line: found in /proc from outside any jail
    code = f"""
    import subprocess, sys

    def test_forever():
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "{marker}"])
        while True:
            pass
    """
    started = time.monotonic()
    report = run_sandbox(workspace, code, timeout=3)
    assert time.monotonic() - started < 15
    stage = report.stage("tests")
    assert stage.status == "failed" and stage.details["timed_out"] is True, report.render()
    assert "TST002" in [f.rule for f in stage.findings]
    eventually_sync(lambda: not processes_with(marker), "the test's child was killed", timeout=5)


def processes_with(marker: str) -> list[int]:
    """Live (not zombie) processes whose command line holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            alive = "zombie" not in (entry / "status").read_text()
            if entry.name.isdigit() and alive and marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_sandbox_hides_secrets_and_proxies(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "super-secret")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    code = """
    import os

    def test_environment():
        assert "AWS_SECRET_ACCESS_KEY" not in os.environ
        assert "HTTPS_PROXY" not in os.environ and "OPENAI_API_KEY" not in os.environ
        assert "MY_API_KEY" not in os.environ
        assert os.environ["FEATURE"] == "on"
        assert "super-secret" not in repr(dict(os.environ))
    """
    report = run_sandbox(workspace, code, extra_env={"FEATURE": "on", "MY_API_KEY": "k"})
    assert report.stage("tests").status == "passed", report.render()
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == "super-secret"


@pytest.mark.slow
def test_sandbox_runs_async_tests_without_the_servers_other_pytest_plugins(workspace: Path) -> None:
    assert importlib.util.find_spec("xdist") is not None  # installed beside the server: it must stay out
    code = """
    import anyio
    import pytest

    @pytest.mark.anyio
    async def test_async():
        await anyio.sleep(0)

    def test_plugins(pytestconfig):
        names = [name for name, _ in pytestconfig.pluginmanager.list_name_plugin()]
        assert not [name for name in names if "xdist" in name or "hypothesis" in name], names
    """
    stage = run_sandbox(workspace, code).stage("tests")
    assert stage.status == "passed" and stage.details["passed"] == 2, stage.findings


@pytest.mark.slow
def test_memory_limit_stops_a_greedy_test(workspace: Path) -> None:
    code = """
    def test_greedy():
        blob = bytearray(8 * 1024 ** 3)
        assert blob
    """
    started = time.monotonic()
    report = run_sandbox(workspace, code, config=ValidationConfig(test_memory_bytes=768 << 20))
    stage = report.stage("tests")
    assert stage.status == "failed"
    assert "MemoryError" in str(stage.details["output_tail"])
    assert time.monotonic() - started < 30


@pytest.mark.slow
def test_sandbox_applies_the_change_to_a_copy_only(workspace: Path) -> None:
    before = tree_digest(workspace)
    change = {
        "components/shop/utils.py": "def helper() -> int:\n    return 5\n",
        "components/shop/test_generated.py": "from components.shop.utils import helper\n\n\n"
        "def test_new():\n    assert helper() == 5\n",
    }
    report = ValidationPipeline().run(
        workspace, change, stages=["tests"], test_paths=["components/shop/test_generated.py"]
    )
    assert report.passed, report.render()
    assert tree_digest(workspace) == before
    missing = ValidationPipeline().run(workspace, change, stages=["tests"], test_paths=["tests/none.py"])
    assert [f.rule for f in missing.stage("tests").findings] == ["TST003"]


def test_bandit_runs_when_installed_and_is_skipped_with_a_note_otherwise(workspace: Path) -> None:
    from generators.validation.bandit_scan import bandit_available

    report = validate(workspace, "import hashlib\nhashlib.md5(b'x')\n", stages=["security"])
    if bandit_available():
        assert "bandit:B324" in rules(report, "security")
    else:
        assert "bandit not installed: skipped" in report.stage("security").note
        assert report.stage("security").status == "passed"


@pytest.mark.slow
def test_long_lived_mypy_worker_finds_the_same_errors_and_survives_a_timeout(workspace: Path, tmp_path: Path) -> None:
    config = ValidationConfig(mypy_cache_dir=tmp_path / "cache", mypy_persistent=True)
    pipeline = ValidationPipeline(config)
    bad = {"components/shop/new.py": "def f(x: int) -> str:\n    return x\n"}
    good = {"components/shop/new.py": "def f(x: int) -> str:\n    return str(x)\n"}
    try:
        first = pipeline.run(workspace, bad, stages=["types"]).stage("types")
        assert first.status == "failed" and [(f.line, f.rule) for f in first.findings] == [(2, "mypy:return-value")]
        assert pipeline.run(workspace, good, stages=["types"]).stage("types").status == "passed"
        hurried = ValidationPipeline(dataclasses.replace(config, mypy_timeout_s=0.001))
        try:
            late = hurried.run(workspace, bad, stages=["types"]).stage("types")
            assert late.status == "failed" and late.findings[0].rule == "TYP000" and "timed out" in late.note
            again = hurried.run(workspace, bad, stages=["types"]).stage("types")
            assert again.findings[0].rule == "TYP000"  # a new worker each time: the timeout killed the last one
        finally:
            hurried.close()
        assert pipeline.run(workspace, bad, stages=["types"]).stage("types").findings[0].rule == "mypy:return-value"
    finally:
        pipeline.close()


@pytest.mark.slow
def test_type_check_alongside_the_other_stages_keeps_order_and_blocking(workspace: Path, tmp_path: Path) -> None:
    pipeline = ValidationPipeline(ValidationConfig(mypy_cache_dir=tmp_path / "cache", mypy_persistent=True))
    stages: list[StageName] = ["syntax", "imports", "security", "types", "quality", "tenancy"]
    try:
        report = pipeline.run(workspace, {"components/shop/new.py": "def f(x: int) -> str:\n    return x\n"},
                              stages=stages, tenant="shop")  # fmt: skip
        assert [s.name for s in report.stages] == stages
        assert report.stage("types").status == "failed" and report.stage("quality").status == "passed"
        broken = pipeline.run(workspace, {"components/shop/new.py": "def f(x: int) -> str\n"}, stages=stages)
        assert [s.name for s in broken.stages] == stages
        assert broken.stage("syntax").status == "failed" and broken.stage("types").status == "skipped"
    finally:
        pipeline.close()
