"""Tenant isolation: the tenants file, key verification, the role and tenant checks of every tool, and the real
HTTP server with several keys (a key used for another tenant gets a ToolError and never sees that tenant's data)."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, MCPError
from mcp.server.auth.provider import AccessToken
from pydantic import BaseModel

from server.auth import SCOPE, KeyVerifier, StaticKeyVerifier, key_verifier
from server.http import UnsafeBindError, check_bind
from server.settings import ConfigFileError, Settings
from server.settings_load import load_settings
from server.tenants import LEGACY_KEY_NAME, TenantsFileError, access_keys, load_tenants_file
from telemetry.cloudwatch.config import CloudWatchConfig
from tests.conftest import PUBLIC_TOOLS, ServerFactory, as_key, call, call_error, connect, mcp_as
from tests.moto_server import MotoServer
from tests.moto_server import client as aws_client
from tests.test_cli import run as run_cli
from tests.test_transports import HEADERS, INIT, start_http
from tools.access import ALL_TENANTS, ROLES, Role, caller_from_token

ACME_KEY = "acme-agent-key-0123456789abcdef"
READER_KEY = "beta-reader-key-0123456789abcdef"
PUSHER_KEY = "acme-pusher-key-0123456789abcdef"
ADMIN_KEY = "legacy-admin-key-0123456789abcdef"
ALL_KEYS = (ACME_KEY, READER_KEY, PUSHER_KEY, ADMIN_KEY)


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


TENANTS_TOML = f"""
[[keys]]
name = "acme-agent"
description = "CI agent of acme"
key_sha256 = "{sha(ACME_KEY)}"
tenants = ["acme"]
roles = ["read", "ingest"]

[[keys]]
name = "beta-reader"
key_env = "BETA_READER_KEY"
tenants = ["beta"]
roles = ["read"]

[[keys]]
name = "acme-pusher"
key_sha256 = "{sha(PUSHER_KEY).upper()}"
tenants = ["acme"]
roles = ["ingest"]
"""


def write(tmp_path: Path, text: str, name: str = "tenants.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def entry(name: str = "k", **fields: str) -> str:
    """One [[keys]] table; each field value is TOML text."""
    body = {"name": json.dumps(name), "key_sha256": json.dumps(sha(name)), "tenants": '["acme"]', "roles": '["read"]'}
    body.update(fields)
    return "[[keys]]\n" + "".join(f"{k} = {v}\n" for k, v in body.items() if v != "") + "\n"


# --- the tenants file --------------------------------------------------------------------------------------------


def test_tenants_file_is_parsed(tmp_path: Path) -> None:
    keys = load_tenants_file(write(tmp_path, TENANTS_TOML), {"BETA_READER_KEY": READER_KEY})
    assert [(k.name, sorted(k.tenants), sorted(k.roles)) for k in keys] == [
        ("acme-agent", ["acme"], ["ingest", "read"]),
        ("beta-reader", ["beta"], ["read"]),
        ("acme-pusher", ["acme"], ["ingest"]),
    ]
    assert [k.sha256.hex() for k in keys] == [sha(ACME_KEY), sha(READER_KEY), sha(PUSHER_KEY)]
    assert ACME_KEY not in repr(keys) and sha(ACME_KEY) not in repr(keys)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (entry(roles='["read", "reader"]'), "[[keys]] #1 ('k'): unknown role(s) 'reader' (roles: read, ingest, "),
        (entry(tenants="[]"), "[[keys]] #1 ('k'): tenants is empty"),
        (entry(roles="[]"), "roles is empty"),
        (entry(tenants='"acme"'), "tenants must be a list of strings"),
        (entry(tenants='["acme", "../etc"]'), "invalid tenant id(s) '../etc'"),
        (entry("a") + entry("b", key_sha256=json.dumps(sha("a"))), "[[keys]] #2 ('b'): the same key as 'a'"),
        (entry("a") + entry("a", key_sha256=json.dumps(sha("x"))), "[[keys]] #2 ('a'): name 'a' is already used by"),
        (entry(key_sha256="", key='"hunter2hunter2"'), "plaintext 'key' is not accepted"),
        (entry(key_sha256=""), "give exactly one of key_sha256 or key_env"),
        (entry(key_env='"SOME_KEY"'), "give exactly one of key_sha256 or key_env"),
        (entry(key_sha256='"abc"'), "key_sha256 must be 64 hex digits"),
        (entry(key_sha256="", key_env='"UNSET_TENANT_KEY"'), "environment variable UNSET_TENANT_KEY is not set"),
        (entry(role='["read"]'), "unknown field(s) role"),
        (entry("bad name"), "name must be 1-64 letters"),
        ("", "no keys: add at least one [[keys]] table"),
        ("keys = []\n", "no keys"),
        ('tenants = ["acme"]\n' + entry(), "unknown top-level entry tenants"),
        ("[[keys]\n", "is not valid TOML"),
    ],
)
def test_invalid_tenants_files_name_the_file_and_entry(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TenantsFileError) as info:
        load_tenants_file(path, {})
    assert str(info.value).startswith(f"tenants file {path}")
    assert problem in str(info.value)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, entry("a", roles='["boss"]') + entry("b", tenants="[]"))
    with pytest.raises(TenantsFileError) as info:
        load_tenants_file(path, {})
    assert "#1 ('a'): unknown role(s) 'boss'" in str(info.value) and "#2 ('b'): tenants is empty" in str(info.value)


def test_missing_file_and_legacy_key_clashes(tmp_path: Path) -> None:
    with pytest.raises(TenantsFileError, match="does not exist"):
        load_tenants_file(tmp_path / "nope.toml", {})
    path = write(tmp_path, entry("dup", key_sha256=json.dumps(sha(ADMIN_KEY))))
    with pytest.raises(TenantsFileError, match="same key as SELF_BUILDING_MCP_API_KEY"):
        access_keys(path, ADMIN_KEY, {})
    taken = write(tmp_path, entry(LEGACY_KEY_NAME), "taken.toml")
    with pytest.raises(TenantsFileError, match="is taken by SELF_BUILDING_MCP_API_KEY"):
        access_keys(taken, ADMIN_KEY, {})
    keys = access_keys(None, ADMIN_KEY, {})
    assert [(k.name, set(k.tenants), set(k.roles)) for k in keys] == [(LEGACY_KEY_NAME, {ALL_TENANTS}, {"admin"})]
    assert access_keys(None, None, {}) == ()


def test_load_settings_refuses_a_bad_tenants_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, entry(roles='["root"]'))
    monkeypatch.setenv("SELF_BUILDING_TENANTS_FILE", str(path))
    monkeypatch.setenv("SELF_BUILDING_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(ConfigFileError, match=f"tenants file {path}: .*unknown role"):
        load_settings()
    monkeypatch.setenv("SELF_BUILDING_TENANTS_FILE", "")
    assert load_settings().tenants_file is None


def test_a_tenants_file_allows_a_public_bind(tmp_path: Path) -> None:
    path = write(tmp_path, TENANTS_TOML)
    with pytest.raises(UnsafeBindError, match="SELF_BUILDING_TENANTS_FILE"):
        check_bind(Settings(http_host="0.0.0.0"))
    check_bind(Settings(http_host="0.0.0.0", tenants_file=path))


# --- key verification ----------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_verifier_names_the_key_and_carries_its_roles_and_tenants(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BETA_READER_KEY", READER_KEY)
    settings = Settings(tenants_file=write(tmp_path, TENANTS_TOML), mcp_api_key=ADMIN_KEY)
    verifier = key_verifier(settings)
    assert isinstance(verifier, KeyVerifier)
    token = await verifier.verify_token(ACME_KEY)
    assert token is not None and token.client_id == "acme-agent" and ACME_KEY not in token.token
    assert token.scopes == [SCOPE, "role:ingest", "role:read", "tenant:acme"]
    caller = caller_from_token(token)
    assert caller.has_role("ingest") and not caller.has_role("admin") and caller.visible(["beta", "acme"]) == ["acme"]
    admin = await verifier.verify_token(ADMIN_KEY)
    assert admin is not None and admin.client_id == LEGACY_KEY_NAME
    assert caller_from_token(admin).has_role("approve") and caller_from_token(admin).may_use("anything")
    assert await verifier.verify_token("nope") is None and await verifier.verify_token(ACME_KEY + "x") is None
    legacy = await StaticKeyVerifier(ADMIN_KEY).verify_token(ADMIN_KEY)
    assert legacy is not None and legacy.scopes == [SCOPE, "role:admin", f"tenant:{ALL_TENANTS}"]
    assert key_verifier(Settings()) is None


def test_unknown_scopes_grant_nothing() -> None:
    token = AccessToken(token="t", client_id="x", scopes=["mcp", "role:root", "admin", "tenant:acme"])
    caller = caller_from_token(token)
    assert caller.roles == frozenset() and caller.tenants == {"acme"}


# --- every tool's check, in process ------------------------------------------------------------------------------

POINT = {"name": "acme.requests", "value": 1.0}
# Each tool, the role it needs, and arguments that pass validation (tenant-scoped tools use tenant "acme").
REQUIRED: dict[str, tuple[Role, dict[str, Any]]] = {
    "get_system_status": ("read", {}),
    "get_monitoring_status": ("read", {}),
    "query_monitoring_events": ("read", {}),
    "analyze_system_performance": ("read", {}),
    "get_top_processes": ("read", {"limit": 1}),
    "list_script_templates": ("read", {}),
    "get_telemetry_sources": ("read", {}),
    "get_alarm_states": ("read", {}),
    "query_telemetry_insights": ("read", {"tenant_id": "acme"}),
    "query_error_patterns": ("read", {"tenant_id": "acme"}),
    "ingest_telemetry": ("ingest", {"tenant_id": "acme", "metrics": [POINT]}),
    "generate_script": ("improve", {"issue_type": "cpu_high", "platform": "bash"}),
    "save_script": ("admin", {"issue_type": "cpu_high", "platform": "bash"}),
    "start_monitoring": ("admin", {"interval_seconds": 60}),
    "stop_monitoring": ("admin", {}),
    "set_monitoring_thresholds": ("admin", {"cpu_percent": 95}),
    "clear_monitoring_events": ("admin", {}),
    "list_deployments": ("read", {"tenant_id": "acme"}),
    "get_deployment": ("read", {"deployment_id": "no-such-deployment"}),
    "rollback_deployment": ("improve", {"deployment_id": "no-such-deployment", "reason": "role check"}),
    "list_pending_approvals": ("approve", {}),
    "approve_change": ("approve", {"change_id": "no-such-change", "approve": False, "reason": "role check"}),
    "query_audit_log": ("read", {}),
    "generate_component": ("improve", {"component_type": "utility", "requirements": "role check", "tenant_id": "acme"}),
    "trigger_improvement_cycle": ("improve", {"tenant_id": "acme", "dry_run": True}),
    "get_improvement_cycle": ("read", {"cycle_id": "no-such-cycle"}),
    "analyze_self": ("read", {}),
}
DENIED = ("needs role", "may not use tenant")


@pytest.mark.anyio
async def test_every_tool_has_a_required_role(make_server: ServerFactory) -> None:
    async with connect(make_server()) as client:
        listed = {tool.name for tool in (await client.list_tools()).tools}
    assert listed <= set(REQUIRED), f"tools without a role in REQUIRED: {sorted(listed - set(REQUIRED))}"
    assert listed >= PUBLIC_TOOLS


@pytest.mark.anyio
@pytest.mark.parametrize("tool", sorted(REQUIRED))
async def test_each_tool_checks_its_role_and_tenant(make_server: ServerFactory, tool: str) -> None:
    role, args = REQUIRED[tool]
    async with connect(make_server()) as client:
        if tool not in {t.name for t in (await client.list_tools()).tools}:
            pytest.skip(f"{tool} is not registered")
        with as_key("without", [r for r in ROLES if r not in (role, "admin")], [ALL_TENANTS]):
            refused = await call_error(client, tool, args)
        with as_key("with", [role], ["acme"]):
            allowed = await client.call_tool(tool, args)
        if "tenant_id" in args:
            with as_key("elsewhere", ["admin"], ["beta", "gamma"]):
                other = await call_error(client, tool, args)
            assert "key 'elsewhere' may not use tenant 'acme'; it may use: beta, gamma" in other
    assert f"key 'without' needs role '{role}'" in refused
    text = json.dumps([c.model_dump() for c in allowed.content])
    assert not any(d in text for d in DENIED), text


@pytest.mark.anyio
async def test_local_caller_is_admin_of_every_tenant(make_server: ServerFactory) -> None:
    async with connect(make_server()) as client:
        for tool, (_, args) in REQUIRED.items():
            result = await client.call_tool(tool, args)
            text = json.dumps([c.model_dump() for c in result.content])
            assert not any(d in text for d in DENIED), (tool, text)
        for tenant in ("acme", "beta"):
            await call(client, "ingest_telemetry", {"tenant_id": tenant, "metrics": [POINT]})
            await call(client, "query_telemetry_insights", {"tenant_id": tenant})
        assert (await client.read_resource("system://status")).contents


@pytest.mark.anyio
async def test_resources_need_read(make_server: ServerFactory) -> None:
    async with connect(make_server()) as client:
        with as_key("pusher", ["ingest"], ["acme"]):
            for uri in ("system://status", "monitoring://events"):
                with pytest.raises(MCPError, match="key 'pusher' needs role 'read'"):
                    await client.read_resource(uri)
        with as_key("reader", ["read"], ["acme"]):
            assert (await client.read_resource("monitoring://events")).contents


# --- alarm states are filtered by tenant ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_alarm_states_show_only_the_callers_tenants(aws: MotoServer, make_server: ServerFactory) -> None:
    cw = aws_client("cloudwatch")
    for name, tenant in (("app-acme", "acme"), ("app-beta", "beta"), ("app-untagged", None)):
        cw.put_metric_alarm(
            AlarmName=name,
            MetricName="Latency",
            Namespace="Shop",
            Statistic="Average",
            Period=60,
            EvaluationPeriods=1,
            Threshold=100,
            ComparisonOperator="GreaterThanThreshold",
            Dimensions=[{"Name": "TenantId", "Value": tenant}] if tenant else [],
        )
    config = CloudWatchConfig.model_validate(
        {"alarm_name_prefix": "app-", "alarm_cache_seconds": 0, "poll_interval_seconds": 0.2, "retry_attempts": 2}
    )
    async with connect(make_server(enable_cloudwatch_streaming=True, cloudwatch=config)) as client:
        everything = await call(client, "get_alarm_states")
        with as_key("acme-agent", ["read"], ["acme"]):
            acme = await call(client, "get_alarm_states")
        with as_key("two", ["read"], ["beta", "default"]):
            two = await call(client, "get_alarm_states")
        with as_key("ops", ["read"], [ALL_TENANTS]):
            ops = await call(client, "get_alarm_states")
    assert [a["name"] for a in everything["alarms"]] == ["app-acme", "app-beta", "app-untagged"]
    assert [a["name"] for a in acme["alarms"]] == ["app-acme"] and acme["total"] == 1
    assert [a["name"] for a in two["alarms"]] == ["app-beta", "app-untagged"]

    # The same alarms in the same states; only how long ago CloudWatch confirmed them moves between the two calls.
    def settled(view: dict[str, Any]) -> dict[str, Any]:
        return {**view, "alarms": [{k: v for k, v in a.items() if k != "age_seconds"} for a in view["alarms"]]}

    assert settled(ops) == settled(everything)


# --- the real HTTP server ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tenant_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("tenants")
    proc, base = start_http(
        tmp,
        SELF_BUILDING_TENANTS_FILE=str(write(tmp, TENANTS_TOML)),
        SELF_BUILDING_MCP_API_KEY=ADMIN_KEY,
        BETA_READER_KEY=READER_KEY,
    )
    try:
        yield base
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        for key in ALL_KEYS:
            assert key not in err and sha(key) not in err


def latency(name: str, component: str, now: float) -> list[dict[str, Any]]:
    """A day of five-minute points that degrades by 60 % in the last quarter: an insight for sure."""
    n = 288
    values = [(100 if i < n * 0.75 else 160) + 5 * math.sin(i / 7) for i in range(n)]
    return [
        {"name": name, "value": v, "timestamp": now - (n - i) * 300, "dimensions": {"Component": component}}
        for i, v in enumerate(values)
    ]


SECRETS = ("beta_secret", "beta-secret-svc", "XYZZY")


@pytest.mark.anyio
async def test_a_key_works_in_its_tenant_and_never_sees_another(tenant_server: str) -> None:
    now = time.time()
    beta_logs = [{"message": f"payment XYZZY failed for order {i}", "level": "ERROR"} for i in range(20)]
    async with mcp_as(tenant_server, ADMIN_KEY) as admin:
        await call(
            admin,
            "ingest_telemetry",
            {
                "tenant_id": "beta",
                "metrics": latency("beta_secret.latency_ms", "beta-secret-svc", now),
                "logs": beta_logs,
            },
        )
        beta_view = await call(admin, "query_telemetry_insights", {"tenant_id": "beta"})
    assert "beta_secret.latency_ms" in json.dumps(beta_view)  # the data is there to be leaked

    async with mcp_as(tenant_server, ACME_KEY) as acme:
        pushed = await call(
            acme, "ingest_telemetry", {"tenant_id": "acme", "metrics": latency("acme.latency_ms", "api", now)}
        )
        insights = await call(acme, "query_telemetry_insights", {"tenant_id": "acme"})
        refused = await call_error(acme, "query_telemetry_insights", {"tenant_id": "beta"})
        refused_push = await call_error(acme, "ingest_telemetry", {"tenant_id": "beta", "metrics": [POINT]})
        seen: list[BaseModel] = [await acme.call_tool(name, args) for name, args in await callable_tools(acme)]
        seen += [await acme.read_resource(uri) for uri in ("system://status", "monitoring://events")]
    assert pushed["tenant_id"] == "acme" and pushed["accepted"]["metrics"] == 288
    assert {i["metric"] for i in insights["insights"]} == {"acme.latency_ms"}
    assert {i["tenant"] for i in insights["insights"]} == {"acme"}
    assert "key 'acme-agent' may not use tenant 'beta'; it may use: acme" in refused
    assert "may not use tenant 'beta'" in refused_push
    everything = json.dumps([r.model_dump() for r in seen])
    assert not any(secret in everything for secret in SECRETS)


async def callable_tools(client: Client) -> list[tuple[str, dict[str, Any]]]:
    """Every listed tool with arguments that pass validation; tenant-scoped ones ask for tenant acme."""
    calls = []
    for tool in (await client.list_tools()).tools:
        properties = tool.input_schema.get("properties", {})
        args: dict[str, Any] = {"tenant_id": "acme"} if "tenant_id" in properties else {}
        if "issue_type" in properties:
            args["issue_type"] = "cpu_high"
        calls.append((tool.name, args))
    return calls


@pytest.mark.anyio
async def test_roles_are_enforced_over_http(tenant_server: str) -> None:
    async with mcp_as(tenant_server, READER_KEY) as reader:
        refused = await call_error(reader, "ingest_telemetry", {"tenant_id": "beta", "metrics": [POINT]})
        stop = await call_error(reader, "stop_monitoring", {})
        beta = await call(reader, "query_telemetry_insights", {"tenant_id": "beta"})
        status = await reader.read_resource("system://status")
    assert "key 'beta-reader' needs role 'ingest' for this; it has: read" in refused
    assert "needs role 'admin'" in stop
    assert beta["tenant_id"] == "beta" and status.contents
    async with mcp_as(tenant_server, PUSHER_KEY) as pusher:
        await call(pusher, "ingest_telemetry", {"tenant_id": "acme", "metrics": [POINT]})
        assert "needs role 'read'" in await call_error(pusher, "get_system_status", {})
        with pytest.raises(MCPError, match="needs role 'read'"):
            await pusher.read_resource("system://status")


@pytest.mark.anyio
async def test_legacy_single_key_is_admin_of_every_tenant(tenant_server: str) -> None:
    async with mcp_as(tenant_server, ADMIN_KEY) as admin:
        for tenant in ("acme", "beta", "gamma"):
            await call(admin, "ingest_telemetry", {"tenant_id": tenant, "metrics": [POINT]})
            await call(admin, "query_telemetry_insights", {"tenant_id": tenant})
        await call(admin, "set_monitoring_thresholds", {"cpu_percent": 97})
        await call(admin, "stop_monitoring", {})


def test_unknown_and_missing_keys_get_401(tenant_server: str) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-key"}, {"Authorization": f"Bearer {sha(ACME_KEY)}"}):
        response = httpx2.post(f"{tenant_server}/mcp", json=INIT, headers={**HEADERS, **headers}, timeout=5)
        assert response.status_code == 401, headers
    good = httpx2.post(
        f"{tenant_server}/mcp", json=INIT, headers={**HEADERS, "Authorization": f"Bearer {READER_KEY}"}, timeout=5
    )
    assert good.status_code == 200


# --- the command line ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_bad_tenants_file_stops_serve_with_exit_2(tmp_path: Path, transport: str) -> None:
    path = write(tmp_path, entry("ci-agent", roles='["read", "superuser"]'))
    proc = run_cli(tmp_path, "serve", "--transport", transport, SELF_BUILDING_TENANTS_FILE=str(path))
    assert proc.returncode == 2, proc.stderr
    assert f"self-building-mcp: error: tenants file {path}: [[keys]] #1 ('ci-agent'): unknown role(s)" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    missing = run_cli(tmp_path, "serve", SELF_BUILDING_TENANTS_FILE=str(tmp_path / "absent.toml"))
    assert missing.returncode == 2 and f"tenants file {tmp_path / 'absent.toml'} does not exist" in missing.stderr
