"""``GET /dashboard`` against the real HTTP server in a subprocess, without a browser: the API's protections
(sign-in, roles, tenants, Host header, action header), the insights window it accepts, the page's files under the
page's strict CSP, and its event stream. The page itself, in a real headless Chromium at desktop and phone sizes, is
in ``test_dashboard_browser.py`` (which uses the server fixture here).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import httpx2
import pytest
from pydantic import SecretStr

from generators.deploy import Deployment
from server.dashboard_data import InsightCache
from server.settings import Settings
from server.tenants import LEGACY_KEY_NAME
from telemetry.learning.engine import Analysis
from telemetry.learning.insights import InsightSummary
from tests.postgres_server import PostgresServer, postgres  # noqa: F401 - the fixture
from tests.test_deployment_tools import CHANGED, CREATED, ORIGINAL, A, B, deployer_for, seed_deployment, seed_workspace
from tests.test_tenants import ACME_KEY, ADMIN_KEY, PUSHER_KEY, TENANTS_TOML, write
from tests.test_transports import start_http
from tools.services import Services

pytestmark = pytest.mark.slow

UPDATE_SECONDS = 1.0
FIGURES = {
    "benchmark": {"script": "benchmarks/bench_a.py", "before_median": 0.2, "after_median": 0.05, "change_percent": -75},
    "telemetry": {"metric": "latency_ms", "before_mean": 180.0, "after_mean": 95.0, "worse_percent": -47.2},
}
ACTION = {"x-dashboard-action": "1"}


@dataclass
class Running:
    base: str
    deployment: Deployment
    workspace: Path
    proc: subprocess.Popen[str]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str | None:
    """The server's backend: its embedded SQLite files (None), or a new database on a real PostgreSQL (its URL)."""
    if request.param == "sqlite":
        return None
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database()


def secret(database: str | None) -> SecretStr | None:
    return None if database is None else SecretStr(database)


def on(database: str | None) -> dict[str, str]:
    """The environment that points a server at ``database``."""
    return {} if database is None else {"SELF_BUILDING_DATABASE_URL": database}


@pytest.fixture
def dashboard_server(tmp_path: Path, database: str | None) -> Iterator[Running]:
    settings = Settings(data_dir=tmp_path / "data", workspace=tmp_path / "ws", database_url=secret(database))
    seed_workspace(settings)
    with deployer_for(settings) as deployer:
        deployment = deployer.deploy("acme", "a", {A: CHANGED, B: CREATED}, actor="cycle", reason="faster total")
        # as an improvement cycle records a judged deployment
        deployer.store.merge_detail(deployment.id, {"figures": FIGURES, "reasons": []})
    proc, base = start_http(
        tmp_path,
        **on(database),
        SELF_BUILDING_TENANTS_FILE=str(write(tmp_path, TENANTS_TOML)),
        SELF_BUILDING_MCP_API_KEY=ADMIN_KEY,
        SELF_BUILDING_DASHBOARD_UPDATE_SECONDS=str(UPDATE_SECONDS),
        SELF_BUILDING_MONITORING_INTERVAL_SECONDS="0.5",
        BETA_READER_KEY="unused-beta-reader-key-0123456789",
    )
    running = Running(base, deployment, settings.workspace, proc)
    try:
        yield running
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        assert not [k for k in (ADMIN_KEY, ACME_KEY, PUSHER_KEY) if k in err]  # keys never reach the logs
        assert "Traceback" not in err, err
        assert "graceful shutdown exceeded" not in err  # open dashboard streams end when the server stops


@contextmanager
def signed_in(base: str, key: str) -> Iterator[httpx2.Client]:
    """An HTTP client holding the dashboard session cookie of ``key``."""
    with httpx2.Client(base_url=base, timeout=10) as http:
        response = http.post("/dashboard/api/login", json={"key": key}, headers=ACTION)
        assert response.status_code == 200, response.text
        yield http


def test_api_needs_a_session_and_respects_roles_and_tenants(dashboard_server: Running) -> None:
    base, deployment = dashboard_server.base, dashboard_server.deployment
    assert httpx2.get(f"{base}/dashboard", timeout=10).status_code == 200  # the page itself carries no data
    assert httpx2.get(f"{base}/dashboard/api/state", timeout=10).status_code == 401
    wrong = httpx2.post(f"{base}/dashboard/api/login", json={"key": "not-a-key"}, headers=ACTION, timeout=10)
    assert wrong.status_code == 401 and "sbm_dashboard" not in wrong.headers.get("set-cookie", "")
    assert httpx2.get(f"{base}/dashboard", headers={"Host": "evil.example"}, timeout=10).status_code == 421

    with httpx2.Client(base_url=base, timeout=10) as browser:  # the session cookie: opaque, HttpOnly, Strict
        response = browser.post(
            "/dashboard/api/login",
            json={"key": ADMIN_KEY},
            headers={**ACTION, "Origin": base},  # same origin
        )
        assert response.status_code == 200, response.text
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("sbm_dashboard=") and ADMIN_KEY not in cookie
        assert {"HttpOnly", "Path=/dashboard", "SameSite=strict"} <= {part.strip() for part in cookie.split(";")}
        assert browser.get("/dashboard/api/state").status_code == 200
        stolen = dict(browser.cookies)
        assert browser.post("/dashboard/api/logout", json={}, headers=ACTION).status_code == 200
        replayed = httpx2.get(f"{base}/dashboard/api/state", cookies=stolen, timeout=10)
        assert replayed.status_code == 401  # a signed-out session is gone on the server too
    foreign = httpx2.post(
        f"{base}/dashboard/api/login", json={"key": ADMIN_KEY}, headers={**ACTION, "Origin": "http://evil.example"},
        timeout=10,
    )  # fmt: skip
    assert foreign.status_code == 403
    as_form = httpx2.post(f"{base}/dashboard/api/login", data={"key": ADMIN_KEY}, headers=ACTION, timeout=10)
    assert as_form.status_code == 400  # actions take JSON only
    pusher = httpx2.post(f"{base}/dashboard/api/login", json={"key": PUSHER_KEY}, headers=ACTION, timeout=10)
    assert pusher.status_code == 403 and "may not read" in pusher.json()["error"]
    with signed_in(base, ADMIN_KEY) as admin:
        no_header = admin.post("/dashboard/api/monitoring", json={"action": "start"})
        assert no_header.status_code == 403 and "x-dashboard-action" in no_header.json()["error"]
        state = admin.get("/dashboard/api/state").json()
        assert state["caller"]["name"] == LEGACY_KEY_NAME and state["can"] == {"monitor": True, "rollback": True}
        assert [d["deployment_id"] for d in state["deployments"]] == [deployment.id]
        assert state["deployments"][0]["figures"][0] == {
            "name": "benchmark s (median)", "before": 0.2, "after": 0.05, "change_percent": -75.0,
        }  # fmt: skip
        # The insights window: 24 h unless the page asks for one it offers; nothing else is analysed.
        assert state["insight_window_hours"] == 24 and state["insight_window_choices"] == [1, 6, 24, 168]
        assert admin.get("/dashboard/api/state", params={"window_hours": "168"}).json()["insight_window_hours"] == 168
        for bad in ("5", "abc", "nan", "1e400", "-1", "24" * 40):
            refused = admin.get("/dashboard/api/state", params={"window_hours": bad})
            assert refused.status_code == 400, (bad, refused.text)
            assert refused.json()["error"].endswith("is not offered: give one of 1, 6, 24, 168"), refused.text
            assert len(refused.text) < 200  # the value is quoted cut short
    with signed_in(base, ACME_KEY) as acme:  # read + ingest on acme: may look, may not act
        state = acme.get("/dashboard/api/state").json()  # as the page asks: its tenant is the key's own
        assert state["tenant"] == "acme" and state["tenant_choices"] == ["acme"]
        assert state["can"] == {"monitor": False, "rollback": False}
        assert [d["deployment_id"] for d in state["deployments"]] == [deployment.id]
        refused = acme.post("/dashboard/api/monitoring", json={"action": "start"}, headers=ACTION)
        assert refused.status_code == 403 and "needs role 'admin'" in refused.json()["error"]
        refused = acme.post(
            "/dashboard/api/rollback", json={"deployment_id": deployment.id, "reason": "x"}, headers=ACTION
        )
        assert refused.status_code == 403 and "needs role 'improve'" in refused.json()["error"]
        other = acme.get("/dashboard/api/state", params={"tenant": "beta"})
        assert other.status_code == 403 and "may not use tenant 'beta'" in other.json()["error"]
        assert acme.get("/dashboard/api/state", params={"tenant": "../x"}).status_code == 400
    assert (dashboard_server.workspace / A).read_bytes() != ORIGINAL  # nothing was rolled back


def test_the_page_files_are_served_with_the_page_headers(dashboard_server: Running) -> None:
    """The favicon (no 404 on every load) and the vendored chart library come from this server, under the same strict
    CSP as the page: no inline script, nothing from elsewhere."""
    base = dashboard_server.base
    page = httpx2.get(f"{base}/dashboard", timeout=10)
    scripts = re.findall(r"<script[^>]*>", page.text)
    assert scripts and all(re.search(r'src="/dashboard/[\w.-]+\.js"', tag) for tag in scripts)  # none inline
    assert '<link rel="icon" href="/dashboard/favicon.svg"' in page.text
    for name, media in (
        ("favicon.svg", "image/svg+xml"),
        ("uPlot.iife.min.js", "text/javascript"),
        ("uPlot.min.css", "text/css"),
        ("dashboard-charts.js", "text/javascript"),
    ):
        served = httpx2.get(f"{base}/dashboard/{name}", timeout=10)
        assert served.status_code == 200 and served.headers["content-type"].startswith(media), name
        assert served.headers["content-security-policy"] == page.headers["content-security-policy"], name
        assert f"/dashboard/{name}" in page.text, name
    assert "script-src 'self';" in page.headers["content-security-policy"]


@pytest.mark.anyio
async def test_the_insight_window_reaches_the_learning_engine_and_keys_the_cache() -> None:
    asked: list[tuple[str, float]] = []

    class Learning:
        def analyze(self, tenant: str, *, window_hours: float) -> Analysis:
            asked.append((tenant, window_hours))
            summary = InsightSummary(total=0, by_kind={}, by_severity={}, series_analysed=0, logs_analysed=0)
            return Analysis([], [], summary)

    svc = cast(Services, SimpleNamespace(learning=Learning()))
    cache = InsightCache()
    for tenant, hours in (("acme", 6), ("acme", 6), ("acme", 168), ("beta", 6), ("acme", 168)):
        await cache.get(svc, tenant, hours)
    assert asked == [("acme", 6), ("acme", 168), ("beta", 6)]  # each tenant and window analysed once within the TTL


def test_event_stream_pushes_changes_and_ends_when_the_server_stops(dashboard_server: Running) -> None:
    base, deployment = dashboard_server.base, dashboard_server.deployment
    with signed_in(base, ADMIN_KEY) as http, http.stream("GET", "/dashboard/api/stream") as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines) == f"retry: {int(UPDATE_SECONDS * 1000)}"
        done = http.post(
            "/dashboard/api/rollback", json={"deployment_id": deployment.id, "reason": "r"}, headers=ACTION
        )
        assert done.status_code == 200 and done.json()["deployment"]["status"] == "rolled_back"
        pushed = f'data: {{"uri": "deployments://{deployment.id}"}}'
        seen = []
        for line in lines:
            seen.append(line)
            if line == pushed:
                break
        assert seen[-2:] == ["event: change", pushed]  # pushed at once (ticks come only every second)
        dashboard_server.proc.terminate()
        list(lines)  # the server ends the stream as it stops: a hung stream would hit the client's read timeout
    dashboard_server.proc.wait(timeout=30)  # and the fixture finds no "graceful shutdown exceeded" in the log


def test_a_refused_rollback_answers_with_the_status_of_its_kind(dashboard_server: Running) -> None:
    """The dashboard calls the change service itself and answers its domain errors by their kind, in their words."""
    base, deployment = dashboard_server.base, dashboard_server.deployment
    with signed_in(base, ADMIN_KEY) as http:
        missing = http.post("/dashboard/api/rollback", json={"deployment_id": "nope", "reason": "r"}, headers=ACTION)
        assert missing.status_code == 404 and "no deployment has id 'nope'" in missing.json()["error"]
        body = {"deployment_id": deployment.id, "reason": "r"}
        assert http.post("/dashboard/api/rollback", json=body, headers=ACTION).status_code == 200
        again = http.post("/dashboard/api/rollback", json=body, headers=ACTION)
        assert again.status_code == 409 and "rolled_back" in again.json()["error"], again.text  # not now: conflict


def test_failed_sign_ins_are_limited_per_client(dashboard_server: Running) -> None:
    base = dashboard_server.base
    codes = [
        httpx2.post(f"{base}/dashboard/api/login", json={"key": f"guess-{i}"}, headers=ACTION, timeout=10).status_code
        for i in range(11)
    ]
    assert codes == [401] * 10 + [429]
    refused = httpx2.post(f"{base}/dashboard/api/login", json={"key": ADMIN_KEY}, headers=ACTION, timeout=10)
    assert refused.status_code == 429 and "wait a minute" in refused.json()["error"]


def test_event_stream_shows_a_key_only_its_own_tenants_changes(tmp_path: Path, database: str | None) -> None:
    settings = Settings(data_dir=tmp_path / "data", workspace=tmp_path / "ws", database_url=secret(database))
    seed_workspace(settings)
    acme = seed_deployment(settings, tenant="acme")
    with deployer_for(settings) as deployer:
        beta = deployer.deploy("beta", "b", {"components/beta/b.py": b"X = 1\n"}, actor="cycle", reason="helper")
    proc, base = start_http(
        tmp_path,
        **on(database),
        SELF_BUILDING_TENANTS_FILE=str(write(tmp_path, TENANTS_TOML)),
        SELF_BUILDING_MCP_API_KEY=ADMIN_KEY,
        SELF_BUILDING_DASHBOARD_UPDATE_SECONDS=str(UPDATE_SECONDS),
        BETA_READER_KEY="unused-beta-reader-key-0123456789",
    )
    try:
        with (
            signed_in(base, ACME_KEY) as acme_page,
            acme_page.stream("GET", "/dashboard/api/stream") as acme_stream,
            signed_in(base, ADMIN_KEY) as admin_page,
            admin_page.stream("GET", "/dashboard/api/stream") as admin_stream,
        ):
            acme_lines, admin_lines = acme_stream.iter_lines(), admin_stream.iter_lines()
            assert next(acme_lines).startswith("retry: ") and next(admin_lines).startswith("retry: ")
            for deployment, wait_on in ((beta, admin_lines), (acme, acme_lines)):
                done = admin_page.post(
                    "/dashboard/api/rollback", json={"deployment_id": deployment.id, "reason": "r"}, headers=ACTION
                )
                assert done.status_code == 200, done.text
                pushed = f'data: {{"uri": "deployments://{deployment.id}"}}'
                seen = []
                for line in wait_on:  # beta's change reaches the admin's page (so it was pushed), then acme's...
                    seen.append(line)
                    if line == pushed:
                        break
        # ...reaches acme's page, which was told nothing of beta's deployment, nor of beta's cycles before it.
        assert [line for line in seen if line.startswith('data: {"uri"')] == [pushed]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err
