"""``GET /dashboard`` in a real headless Chromium (Debian's chromium, driven by playwright) against the real HTTP
server in a subprocess: sign-in with an API key that never shows in a URL or the logs, live host figures, a new
monitoring event shown as soon as it is raised, filters, start/stop monitoring, and a rollback that needs a
confirmation. The run leaves screenshots (and the time the new event took to show) in ``test-artifacts/``. The
API's protections (sign-in, roles, tenants, Host header, action header) are checked without a browser as well.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from generators.deploy import Deployment, SqliteVersionStore
from server.settings import Settings
from server.tenants import LEGACY_KEY_NAME
from tests.conftest import mcp_as
from tests.test_deployment_tools import ORIGINAL, A, deployer_for, seed_deployment, seed_workspace
from tests.test_tenants import ACME_KEY, ADMIN_KEY, PUSHER_KEY, TENANTS_TOML, write
from tests.test_transports import start_http

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("SELF_BUILDING_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
UPDATE_SECONDS = 1.0
FIGURES = {
    "benchmark": {"script": "benchmarks/bench_a.py", "before_median": 0.2, "after_median": 0.05, "change_percent": -75},
    "telemetry": {"metric": "latency_ms", "before_mean": 180.0, "after_mean": 95.0, "worse_percent": -47.2},
}
ACTION = {"x-dashboard-action": "1"}
PERCENT = re.compile(r"^\d+\.\d %$")
VERDICT = re.compile(r"^(healthy|degraded|critical)$")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Running:
    base: str
    deployment: Deployment
    workspace: Path
    proc: subprocess.Popen[str]


@pytest.fixture
def dashboard_server(tmp_path: Path) -> Iterator[Running]:
    settings = Settings(data_dir=tmp_path / "data", workspace=tmp_path / "ws")
    seed_workspace(settings)
    deployment = seed_deployment(settings, tenant="acme")
    versions = SqliteVersionStore(settings.data_dir / "versions.sqlite3")
    try:  # as an improvement cycle records a judged deployment
        versions.merge_detail(deployment.id, {"figures": FIGURES, "reasons": []})
    finally:
        versions.close()
    proc, base = start_http(
        tmp_path,
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


def test_failed_sign_ins_are_limited_per_client(dashboard_server: Running) -> None:
    base = dashboard_server.base
    codes = [
        httpx2.post(f"{base}/dashboard/api/login", json={"key": f"guess-{i}"}, headers=ACTION, timeout=10).status_code
        for i in range(11)
    ]
    assert codes == [401] * 10 + [429]
    refused = httpx2.post(f"{base}/dashboard/api/login", json={"key": ADMIN_KEY}, headers=ACTION, timeout=10)
    assert refused.status_code == 429 and "wait a minute" in refused.json()["error"]


@pytest.mark.anyio
async def test_dashboard_in_headless_chromium(dashboard_server: Running) -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("SELF_BUILDING_REQUIRE_BROWSER"):
            pytest.fail(f"no Chromium at {CHROMIUM} (install Debian's chromium package)")
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (CI installs it)")
    from playwright.async_api import async_playwright, expect

    base, deployment = dashboard_server.base, dashboard_server.deployment
    urls: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1500})
            page.on("request", lambda request: urls.append(request.url))
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{base}/dashboard")

            # Sign in: the key is posted once, in a body.
            await expect(page.locator("#login")).to_be_visible()
            await page.fill("#key", ADMIN_KEY)
            await page.click("#login-form button[type=submit]")
            await expect(page.locator("#login")).to_be_hidden()

            # Live host figures, refreshed without reloading.
            await expect(page.locator("#cpu-value")).to_have_text(PERCENT)
            await expect(page.locator("#mem-value")).to_have_text(PERCENT)
            await expect(page.locator("#verdict")).to_have_text(VERDICT)
            await expect(page.locator("#gpus")).to_contain_text("no GPU")
            await expect(page.locator("#connection")).to_have_text("live")
            first = await page.locator("#last-update").text_content()
            await expect(page.locator("#last-update")).not_to_have_text(first or "", timeout=10_000)

            # Deployments with their before/after figures.
            row = page.locator(f"tr[data-deployment-id='{deployment.id}']")
            await expect(row.locator(".status")).to_have_text("deployed")
            await expect(row).to_contain_text("benchmark s (median): 0.2 → 0.05 (-75 %)")
            await expect(row).to_contain_text("latency_ms (mean): 180 → 95")

            # A monitoring event appears as soon as it is raised: thresholds every host exceeds, then Start.
            async with mcp_as(base, ADMIN_KEY) as client:
                done = await client.call_tool(
                    "set_monitoring_thresholds", {"memory_percent": 0.1, "consecutive_samples": 1}
                )
                assert not done.is_error
            await expect(page.locator("#monitoring-state")).to_have_text("stopped")
            await expect(page.locator("#events")).to_contain_text("no events")
            await page.click("#start-monitoring")
            await expect(page.locator("#monitoring-state")).to_contain_text("running every 0.5 s")
            event = page.locator("#events li[data-type='memory_high']")
            await expect(event).to_be_visible(timeout=int((UPDATE_SECONDS + 4) * 1000))
            shown_at = await page.evaluate("Date.now() / 1000")
            severity = await event.locator(".sev").text_content()
            assert severity in ("low", "medium", "high", "critical")
            await expect(event).to_have_class(severity)  # the severity colours the timeline entry
            colour = await event.evaluate("e => getComputedStyle(e).borderLeftColor")
            plain = await page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--line')")
            assert colour not in ("", plain)
            # Filter by type: another type hides it, "every type" shows it again.
            await page.select_option("#event-filter", "cpu_high")
            await expect(page.locator("#events li[data-type='memory_high']")).to_have_count(0)
            await page.select_option("#event-filter", "")
            await expect(event).to_be_visible()

            # Charts of the last hour fill in from the samples monitoring records.
            await expect(page.locator("figure[data-series='host.cpu.percent'] polyline")).to_have_count(1)
            await page.screenshot(path=str(_artifact("dashboard.png")), full_page=True)

            # Rollback needs a confirmation: cancel leaves it deployed, confirm rolls it back.
            await row.locator("button.rollback").click()
            await expect(page.locator("#confirm-dialog")).to_be_visible()
            await page.click("#confirm-no")
            await expect(page.locator("#confirm-dialog")).to_be_hidden()
            await expect(row.locator(".status")).to_have_text("deployed")
            assert (dashboard_server.workspace / A).read_bytes() != ORIGINAL
            await row.locator("button.rollback").click()
            await page.fill("#confirm-reason", "slower under real load")
            await page.screenshot(path=str(_artifact("dashboard-confirm.png")))
            await page.click("#confirm-yes")
            await expect(row.locator(".status")).to_have_text("rolled_back")
            await page.screenshot(path=str(_artifact("dashboard-rolled-back.png")), full_page=True)
            await expect(page.locator("#deployment-message")).to_contain_text("restored the previous bytes of 2")
            await expect(row.locator("button.rollback")).to_be_disabled()

            await page.click("#stop-monitoring")
            await expect(page.locator("#monitoring-state")).to_have_text("stopped")
            assert not errors, errors
        finally:
            await browser.close()
    assert (dashboard_server.workspace / A).read_bytes() == ORIGINAL
    assert urls and not [u for u in urls if ADMIN_KEY in u]  # the key never travels in a URL
    async with mcp_as(base, ADMIN_KEY) as client:
        audit = await client.call_tool("query_audit_log", {"kind": "rollback"})
        raised = await client.call_tool("query_monitoring_events", {"event_type": "memory_high"})
    assert raised.structured_content is not None
    first_seen = raised.structured_content["events"][-1]["first_seen"]
    _artifact("dashboard-timing.txt").write_text(  # for the record: how long the page took to show the new event
        f"memory_high raised at {first_seen:.3f}, shown in the page {shown_at - first_seen:.3f} s later "
        f"(update interval {UPDATE_SECONDS} s)\n",
        encoding="utf-8",
    )
    assert audit.structured_content is not None
    (entry,) = audit.structured_content["entries"]
    assert entry["actor"] == LEGACY_KEY_NAME and entry["detail"]["reason"] == "slower under real load"


def _artifact(name: str) -> Path:
    """A file the run leaves in ``test-artifacts/`` (screenshots, the event timing)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


def test_event_stream_shows_a_key_only_its_own_tenants_changes(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", workspace=tmp_path / "ws")
    seed_workspace(settings)
    acme = seed_deployment(settings, tenant="acme")
    with deployer_for(settings) as deployer:
        beta = deployer.deploy("beta", "b", {"components/beta/b.py": b"X = 1\n"}, actor="cycle", reason="helper")
    proc, base = start_http(
        tmp_path,
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
