"""``GET /dashboard`` in a real headless Chromium (Debian's chromium, driven by playwright) against the real HTTP
server in a subprocess, at 1280 x 900 and at a phone's 390 x 844: a sign-in view that shows one state, with an API key
that never shows in a URL or the logs; live host figures; charts with a time axis, a value axis with its unit, the
value now and the value under the pointer; a new monitoring event shown as soon as it is raised, each reason once;
filters and the insights window; start/stop monitoring and what the page says once it has stopped; a rollback that
needs a confirmation; no script error, no console message, no 404 (the favicon is served); on the phone nothing wider
than the screen. The run leaves screenshots (dashboard-sign-in, -desktop, -confirm, -rolled-back, -after-stop,
-gpu-charts, -phone-sign-in, -phone) and the time the new event took to show in ``test-artifacts/``.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from server.tenants import LEGACY_KEY_NAME
from tests.conftest import mcp_as
from tests.test_dashboard import ACTION, UPDATE_SECONDS, Running, dashboard_server, signed_in
from tests.test_deployment_tools import ORIGINAL, A
from tests.test_tenants import ADMIN_KEY

pytestmark = pytest.mark.slow
__all__ = ["dashboard_server"]  # the fixture the tests here use


@pytest.fixture
def database() -> None:
    """The page on the embedded backend only: what it shows on PostgreSQL is tested in ``test_dashboard.py``."""
    return None


CHROMIUM = os.environ.get("SELF_BUILDING_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
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


@asynccontextmanager
async def chromium_page(width: int, height: int) -> AsyncIterator[Watched]:
    """A page of Debian's headless Chromium at ``width`` x ``height``, watched for errors, 404s and every URL."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("SELF_BUILDING_REQUIRE_BROWSER"):
            pytest.fail(f"no Chromium at {CHROMIUM} (install Debian's chromium package)")
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (CI installs it)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": width, "height": height}, is_mobile=width < 600)
            watched = Watched(page)
            page.on("request", lambda request: watched.urls.append(request.url))
            page.on("response", lambda response: watched.statuses.append((response.url, response.status)))
            page.on("pageerror", lambda exc: watched.errors.append(str(exc)))
            page.on("console", lambda m: watched.console.append(m.text) if m.type in ("error", "warning") else None)
            yield watched
        finally:
            await browser.close()


@dataclass
class Watched:
    page: Any
    urls: list[str] = field(default_factory=list)
    statuses: list[tuple[str, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def check_clean(self, base: str) -> None:
        """No script error, nothing logged to the console (a 404 is logged there), the favicon served."""
        assert not self.errors, self.errors
        assert not self.console, self.console
        assert not [(u, s) for u, s in self.statuses if s >= 400], self.statuses
        assert (f"{base}/dashboard/favicon.svg", 200) in self.statuses


async def sign_in(page: Any, base: str) -> None:
    """Open the page and sign in: the sign-in view shows the form and one state, nothing of the live page."""
    from playwright.async_api import expect

    await page.goto(f"{base}/dashboard")
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.locator("#connection")).to_have_text("signed out")
    for hidden in ("#verdict", "#sign-out", "#last-update", "#reasons", "#host-card"):
        await expect(page.locator(hidden)).to_be_hidden()
    await expect(page.get_by_text("loading…")).to_have_count(0)
    await page.fill("#key", ADMIN_KEY)
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#login")).to_be_hidden()


async def check_chart(page: Any, series: str) -> None:
    """A real chart: a canvas with a time axis and a value axis labelled with its unit (0-100 for percent), and the
    latest value printed beside the title."""
    from playwright.async_api import expect

    chart = page.locator(f"figure[data-series='{series}']")
    await expect(chart.locator("canvas")).to_have_count(1)
    await expect(chart.locator(".u-axis")).to_have_count(2)
    await expect(chart.locator(".current")).to_have_text(PERCENT)
    await expect(chart).to_have_attribute("data-y-ticks", re.compile(r"^0 %\|.*\|100 %$"))
    await expect(chart).to_have_attribute("data-x-ticks", re.compile(r"^\d\d:\d\d(:\d\d)?(\|\d\d:\d\d(:\d\d)?)+$"))
    card = await page.locator("#charts-card").bounding_box()
    canvas = await chart.locator("canvas").bounding_box()
    assert card is not None and canvas is not None
    assert canvas["width"] >= 0.4 * card["width"] and canvas["x"] + canvas["width"] <= card["x"] + card["width"]


async def hover_on_a_sample(page: Any, chart: Any) -> str:
    """The readout with the pointer on a sample: the plot is crossed from the right (the newest) in steps smaller
    than the distance at which a sample counts as under the pointer, so one is found wherever the samples lie."""
    over = chart.locator(".u-over")
    box = await over.bounding_box()
    assert box is not None
    for x in range(int(box["width"]) - 2, 0, -12):
        await over.hover(position={"x": x, "y": box["height"] / 2})
        await page.evaluate(NEXT_FRAME)
        if text := await chart.locator(".readout").text_content():
            return str(text)
    raise AssertionError("no sample under the pointer anywhere on the chart")


NEXT_FRAME = "new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"


@pytest.mark.anyio
async def test_dashboard_in_headless_chromium(dashboard_server: Running) -> None:
    from playwright.async_api import expect

    base, deployment = dashboard_server.base, dashboard_server.deployment
    async with chromium_page(1280, 900) as watched:
        page = watched.page
        await page.goto(f"{base}/dashboard")
        await expect(page.locator("#login")).to_be_visible()
        await page.screenshot(path=str(_artifact("dashboard-sign-in.png")))
        # Sign in: the key is posted once, in a body.
        await sign_in(page, base)

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
        await expect(event).to_contain_text("· active")
        colour = await page.evaluate(  # in one go: each refresh replaces the entries
            "getComputedStyle(document.querySelector(\"#events li[data-type='memory_high']\")).borderLeftColor"
        )
        plain = await page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--line')")
        assert colour not in ("", plain)
        # The header says each reason once: the open event and the live check that flags the same figure are one.
        await expect(page.locator("#reasons")).to_contain_text(re.compile(r"open event #\d+: Memory usage at"))
        reasons = (await page.locator("#reasons").text_content() or "").split("; ")
        assert len([r for r in reasons if "memory" in r.lower()]) == 1, reasons
        # Filter by type: another type hides it, "every type" shows it again.
        await page.select_option("#event-filter", "cpu_high")
        await expect(page.locator("#events li[data-type='memory_high']")).to_have_count(0)
        await page.select_option("#event-filter", "")
        await expect(event).to_be_visible()

        # Charts of the last hour fill in from the samples monitoring records: real axes, the value now, and the
        # value under the pointer.
        for series in ("host.cpu.percent", "host.memory.percent"):
            await check_chart(page, series)
        cpu = page.locator("figure[data-series='host.cpu.percent']")
        await expect(cpu.locator(".readout")).to_have_text("")
        assert re.fullmatch(r"\d+\.\d % at \d\d:\d\d:\d\d", await hover_on_a_sample(page, cpu))
        await page.screenshot(path=str(_artifact("dashboard-desktop.png")), full_page=True)
        await page.mouse.move(0, 0)
        await expect(cpu.locator(".readout")).to_have_text("")  # off the chart: the value now only

        # The insights window: 24 h unless chosen; choosing one asks for it.
        await expect(page.locator("#insight-window")).to_have_value("24")
        async with page.expect_request(re.compile(r"/dashboard/api/state\?.*window_hours=168")):
            await page.select_option("#insight-window", "168")
        await expect(page.locator("#insights")).to_contain_text(re.compile("nothing notable in the last 7 d|:"))

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

        # Stop: the open event stays open (nothing clears it now) and the page says so instead of a verdict that
        # nothing updates. With limits no live figure exceeds, the verdict is the live one: healthy.
        await page.click("#stop-monitoring")
        await expect(page.locator("#monitoring-state")).to_have_text("stopped")
        async with mcp_as(base, ADMIN_KEY) as client:
            limits = {"cpu_percent": 100, "memory_percent": 100, "disk_percent": 100}
            assert not (await client.call_tool("set_monitoring_thresholds", limits)).is_error
            status = (await client.call_tool("get_system_status", {})).structured_content
        assert status is not None and status["monitoring"]["active_events"] >= 1
        assert status["verdict"] == "healthy" and "monitoring is stopped" in status["note"]
        await expect(page.locator("#verdict")).to_have_text("healthy")
        stale = re.compile(r"^monitoring stopped at .+: \d+ events? open then (is|are) not being updated")
        await expect(page.locator("#stale-note")).to_have_text(stale)
        await expect(page.locator("#monitoring-note")).to_have_text(
            re.compile(
                r"^(1 event was|\d+ events were) open when it stopped and stays? as (it was|they were): Start re-checks"
            )
        )
        await expect(page.locator("#reasons")).to_have_text("")
        await expect(event).to_contain_text("· open when monitoring stopped")
        await expect(page.locator("#events")).not_to_contain_text("· active")
        await page.screenshot(path=str(_artifact("dashboard-after-stop.png")), full_page=True)
        watched.check_clean(base)
        urls = watched.urls
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


@pytest.mark.anyio
async def test_dashboard_on_a_phone_fits_the_screen(dashboard_server: Running) -> None:
    """At 390 x 844 (issue 12 point 2): nothing runs past the screen (no sideways scrolling), the header is as wide
    as the screen with its title on one line, table rows stack inside their card, charts fit their card."""
    from playwright.async_api import expect

    base, deployment = dashboard_server.base, dashboard_server.deployment
    with signed_in(base, ADMIN_KEY) as http:  # a long unbroken reason, as a rollback can carry
        done = http.post(
            "/dashboard/api/rollback", json={"deployment_id": deployment.id, "reason": LONG_REASON}, headers=ACTION
        )
        assert done.status_code == 200, done.text
    async with mcp_as(base, ADMIN_KEY) as client:
        started = await client.call_tool(
            "start_monitoring",
            {"interval_seconds": 0.5, "thresholds": {"memory_percent": 0.1, "consecutive_samples": 1}},
        )
        assert not started.is_error
    async with chromium_page(390, 844) as watched:
        page = watched.page
        await page.goto(f"{base}/dashboard")
        await expect(page.locator("#login")).to_be_visible()
        await page.screenshot(path=str(_artifact("dashboard-phone-sign-in.png")))
        await sign_in(page, base)
        await expect(page.locator("#events li[data-type='memory_high']")).to_be_visible(timeout=10_000)
        await expect(page.locator(f"tr[data-deployment-id='{deployment.id}']")).to_contain_text(LONG_REASON)
        for series in ("host.cpu.percent", "host.memory.percent"):
            await check_chart(page, series)
        await page.screenshot(path=str(_artifact("dashboard-phone.png")), full_page=True)

        layout = await page.evaluate(PHONE_LAYOUT)
        # A page wider than the screen makes a phone widen its layout viewport (and zoom out) rather than scroll.
        assert layout["innerWidth"] == 390, layout
        assert layout["scrollWidth"] <= layout["innerWidth"], layout
        assert layout["header"] == [0, layout["innerWidth"]], layout  # its background reaches both edges
        assert layout["titleLines"] == 1, layout
        assert layout["overflowing"] == [], layout  # no card is wider inside than it is
        watched.check_clean(base)


@pytest.mark.anyio
async def test_charts_of_other_units_and_several_lines(dashboard_server: Running) -> None:
    """GPU charts as a host with two GPUs sends them (the state is the server's, with GPU series added, as this host
    has none): a line per GPU with its latest value and, as that is minutes old, when it was taken; °C and W axes
    that start at 0, percent 0-100; the value of each line under the pointer."""
    from playwright.async_api import expect

    async def with_gpus(route: Any) -> None:
        response = await route.fetch()
        state = await response.json()
        now = state["generated_at"]
        times = [now - 2100 + 30 * i for i in range(61)]  # the newest 5 minutes old, as after monitoring stopped

        def chart(name: str, label: str, unit: str, top: float | None, base: float) -> dict[str, Any]:
            lines = [
                {"label": f"gpu {g}", "points": [[t, base + 10 * g + (i % 7)] for i, t in enumerate(times)]}
                for g in (0, 1)
            ]
            return {"name": name, "label": label, "unit": unit, "top": top, "lines": lines}

        state["charts"] = [
            chart("gpu.utilization.percent", "GPU", "%", 100, 40),
            chart("gpu.temperature.c", "GPU temperature", "°C", None, 55),
            chart("gpu.power.watts", "GPU power", "W", None, 300),
        ]
        await route.fulfill(response=response, json=state)

    async with chromium_page(1280, 900) as watched:
        page = watched.page
        await page.route(re.compile(r"/dashboard/api/state"), with_gpus)
        await sign_in(page, dashboard_server.base)
        for series, unit in (("gpu.utilization.percent", "%"), ("gpu.temperature.c", "°C"), ("gpu.power.watts", "W")):
            chart = page.locator(f"figure[data-series='{series}']")
            await expect(chart.locator("canvas")).to_have_count(1)
            value = rf"\d+\.\d {unit}"
            await expect(chart.locator(".current .line-value")).to_have_text(
                [re.compile(rf"^gpu 0 {value}$"), re.compile(rf"^gpu 1 {value}$")]
            )
            await expect(chart).to_have_attribute("data-y-ticks", re.compile(rf"^0 {unit}(\|\d+(\.\d+)? {unit})+$"))
            await expect(chart.locator(".current .taken")).to_have_text(re.compile(r"^at \d\d:\d\d$"))
            reading = await hover_on_a_sample(page, chart)
            assert re.fullmatch(rf"gpu 0 {value} · gpu 1 {value} at \d\d:\d\d:\d\d", reading), reading
        await page.mouse.move(0, 0)
        await expect(page.locator("figure[data-series='gpu.utilization.percent']")).to_have_attribute(
            "data-y-ticks", re.compile(r"^0 %\|.*\|100 %$")
        )
        await page.locator("#charts-card").screenshot(path=str(_artifact("dashboard-gpu-charts.png")))
        watched.check_clean(dashboard_server.base)


LONG_REASON = "rolled-back-after-p99-latency-regression-on-the-checkout-path-" * 2
# What the phone test measures: the page's width against the screen's, the header's edges, the title's lines (its
# height over its line height), and any card whose content is wider than the card.
PHONE_LAYOUT = """() => {
  const header = document.querySelector("header").getBoundingClientRect();
  const title = document.querySelector("header h1");
  const style = getComputedStyle(title);
  const overflowing = [...document.querySelectorAll(".card")]
    .filter((c) => c.scrollWidth > c.clientWidth + 1).map((c) => c.id);
  return {
    innerWidth: window.innerWidth,
    scrollWidth: document.documentElement.scrollWidth,
    header: [Math.round(header.left), Math.round(header.right)],
    titleLines: Math.round(title.getBoundingClientRect().height / parseFloat(style.lineHeight)),
    overflowing,
  };
}"""


def _artifact(name: str) -> Path:
    """A file the run leaves in ``test-artifacts/`` (screenshots, the event timing)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name
