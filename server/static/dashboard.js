// self-building-mcp dashboard: no build step; charts by uPlot (dashboard-charts.js). Data is only ever written as text.
"use strict";

const $ = (id) => document.getElementById(id);
let charts = null;
let stream = null;
let refreshTimer = null;
let refreshing = false;
let again = false;
let pendingRollback = null;

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const pct = (v) => (v === null || v === undefined ? "–" : `${Number(v).toFixed(1)} %`);
const when = (ts) => new Date(ts * 1000).toLocaleTimeString();
const num = (v) => (typeof v === "number" ? Number(v.toPrecision(4)).toString() : String(v ?? "–"));

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json", "x-dashboard-action": "1" },
    body: JSON.stringify(body),
  };
  const response = await fetch(path, { credentials: "same-origin", cache: "no-store", ...options });
  let data = {};
  try { data = await response.json(); } catch (_) { /* not JSON */ }
  if (response.status === 401) showLogin();
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

// What the page shows: "loading" (nothing known yet), "signin" (only the sign-in form) or "live".
function setView(view) {
  document.body.dataset.view = view;
  $("login").hidden = view !== "signin";
}

function showLogin() {
  setView("signin");
  $("key").focus();
  if (stream) { stream.close(); stream = null; }
  $("connection").textContent = "signed out";
}

async function signIn(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  try {
    await api("/dashboard/api/login", { key: $("key").value });
    $("key").value = "";
    setView("loading");
    $("connection").textContent = "connecting…";
    start();
  } catch (error) {
    $("login-error").textContent = error.message;
  }
}

function scheduleRefresh() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => { refreshTimer = null; refresh(); }, 100);
}

async function refresh() {
  if (refreshing) { again = true; return; }
  refreshing = true;
  try {
    const query = new URLSearchParams();
    if ($("event-filter").value) query.set("event_type", $("event-filter").value);
    if ($("tenant").value) query.set("tenant", $("tenant").value);
    if ($("insight-window").value) query.set("window_hours", $("insight-window").value);
    const data = await api(`/dashboard/api/state?${query}`);
    render(data);
    if (document.body.dataset.view === "loading") setView("live");
    $("last-update").textContent = `updated ${when(data.generated_at)}`;
  } catch (error) {
    $("connection").textContent = `error: ${error.message}`;
  } finally {
    refreshing = false;
    if (again) { again = false; scheduleRefresh(); }
  }
}

function renderTenants(data) {
  const select = $("tenant");
  if (select.options.length === 0) {
    data.tenant_choices.forEach((t) => select.append(el("option", { value: t }, `tenant ${t}`)));
    select.value = data.tenant;
  }
  select.hidden = data.tenant_choices.length < 2;
}

function render(data) {
  renderTenants(data);
  const status = data.status;
  const verdict = $("verdict");
  verdict.textContent = status.verdict;
  verdict.className = `badge live-only ${status.verdict}`;
  $("reasons").textContent = status.reasons.join("; ");
  const stale = staleNote(data.monitoring);
  $("stale-note").textContent = stale;
  $("stale-note").hidden = !stale;
  renderHost(status.host);
  renderGpu(status.gpu);
  renderMonitoring(data.monitoring, data.can.monitor, stale);
  charts.render(data.charts, data.generated_at);
  const firsts = data.charts.flatMap((c) => c.lines.map((l) => l.points[0][0]));
  $("charts-span").textContent = firsts.length ? `samples since ${when(Math.min(...firsts))}` : "";
  renderEvents(data);
  renderInsights(data);
  renderDeployments(data.deployments, data.can.rollback);
}

function renderHost(host) {
  $("cpu-value").textContent = pct(host.cpu.percent);
  $("mem-value").textContent = pct(host.memory.percent);
  $("swap-value").textContent = pct(host.memory.swap_percent);
  $("load-value").textContent = host.cpu.load_average ? num(host.cpu.load_average[0]) : "–";
  $("uptime-value").textContent = `${(host.uptime_seconds / 3600).toFixed(1)} h`;
  $("disks").tBodies[0].replaceChildren(...host.disks.map((d) => el("tr", {}, el("td", {}, d.mountpoint), el("td", {}, pct(d.percent)))));
}

function renderGpu(gpu) {
  const box = $("gpus");
  if (!gpu.available) {
    box.className = "muted";
    box.textContent = `no GPU: ${gpu.reason || "NVML not available"}`;
    return;
  }
  box.className = "";
  box.replaceChildren(...gpu.devices.map((d) => el("div", { class: "gpu", "data-gpu": d.index },
    el("strong", {}, `#${d.index} ${d.name}`), " · util ", pct(d.utilization_percent), " · memory ",
    pct(d.memory_percent), d.temperature_c !== null ? ` · ${d.temperature_c} °C` : "")));
}

// Stopped with events still open: nothing updates or clears them, so say what is known instead of a stale verdict.
function staleNote(state) {
  if (state.running || !state.active_events) return "";
  const events = state.active_events === 1 ? "1 event open then is" : `${state.active_events} events open then are`;
  const at = state.last_sample_at ? ` at ${when(state.last_sample_at)}` : "";
  return `monitoring stopped${at}: ${events} not being updated (the verdict uses the live figures only)`;
}

function renderMonitoring(state, allowed, stale) {
  $("monitoring-state").textContent = state.running
    ? `running every ${num(state.interval_seconds)} s · ${state.active_events} active event(s)`
    : "stopped";
  const open = state.active_events === 1
    ? "1 event was open when it stopped and stays as it was: Start re-checks it"
    : `${state.active_events} events were open when it stopped and stay as they were: Start re-checks them`;
  $("monitoring-note").textContent = stale ? open : "";
  $("monitoring-note").hidden = !stale;
  $("monitoring-state").dataset.running = state.running ? "yes" : "no";
  $("start-monitoring").disabled = !allowed || state.running;
  $("stop-monitoring").disabled = !allowed || !state.running;
  $("start-monitoring").title = allowed ? "" : "needs the admin role";
}

function eventState(e, running) {
  if (!e.active) return "cleared";
  return running ? "active" : "open when monitoring stopped";
}

function renderEvents(data) {
  const select = $("event-filter");
  if (select.options.length === 1) {
    data.event_types.forEach((t) => select.append(el("option", { value: t }, t.replaceAll("_", " "))));
  }
  $("events").replaceChildren(...data.events.map((e) => el("li", { class: e.severity, "data-type": e.event_type, "data-id": e.id },
    el("span", { class: `sev ${e.severity}` }, e.severity), " ", el("strong", {}, e.event_type), " · ",
    e.message, " ", el("span", { class: "muted" }, `${when(e.last_seen)} · ${eventState(e, data.monitoring.running)}`))));
  if (!data.events.length) $("events").append(el("li", { class: "muted" }, "no events"));
  $("events-more").hidden = !data.events_has_more;
}

const windowLabel = (hours) => (hours % 24 === 0 && hours > 24 ? `${hours / 24} d` : `${hours} h`);

function renderInsights(data) {
  const select = $("insight-window");
  if (select.options.length === 0) {
    data.insight_window_choices.forEach((h) => select.append(el("option", { value: String(h) }, `last ${windowLabel(h)}`)));
    select.value = String(data.insight_window_hours);
  }
  const s = data.insight_summary;
  const span = windowLabel(data.insight_window_hours);
  $("insight-summary").textContent = `${s.total} found · ${s.series_analysed} series · ${s.logs_analysed} log lines`;
  $("insights").replaceChildren(...data.insights.map((i) => el("li", { "data-kind": i.kind },
    el("span", { class: `sev ${i.severity}` }, i.severity), ` ${i.kind}: ${i.summary}`)));
  if (!data.insights.length) $("insights").append(el("li", { class: "muted" }, `nothing notable in the last ${span}`));
  $("opportunities").replaceChildren(...data.opportunities.map((o) => el("li", {},
    el("strong", {}, o.component), ` (${o.metric}): ${o.goal} — impact ${num(o.impact_score)}, risk ${o.risk}`)));
}

function figureCell(figures) {
  if (!figures || !figures.length) return el("td", { class: "muted", "data-label": "Before → after" }, "–");
  return el("td", { "data-label": "Before → after" }, el("div", {}, ...figures.map((f) => {
    if (f.note) return el("div", { class: "muted" }, `${f.name}: ${f.note}`);
    const change = f.change_percent;
    const cls = change === null ? "" : change > 0 ? "change-bad" : "change-good";
    return el("div", { class: "figure" }, `${f.name}: ${num(f.before)} → ${num(f.after)} `,
      change === null ? "" : el("span", { class: cls }, `(${change > 0 ? "+" : ""}${change} %)`));
  })));
}

function renderDeployments(rows, allowed) {
  const body = $("deployments").tBodies[0];
  body.replaceChildren(...rows.map((d) => {
    const button = el("button", { class: "rollback", type: "button", disabled: !allowed || d.status !== "deployed" }, "Roll back");
    button.addEventListener("click", () => askRollback(d));
    return el("tr", { "data-deployment-id": d.deployment_id, "data-status": d.status },
      el("td", { "data-label": "Component" }, d.component), el("td", { "data-label": "Tenant" }, d.tenant_id),
      el("td", { class: "status", "data-label": "Status" }, d.status), figureCell(d.figures),
      el("td", { "data-label": "Reason" }, d.rollback_reason || d.reason), el("td", { class: "actions" }, button));
  }));
  if (!rows.length) body.append(el("tr", {}, el("td", { colSpan: 6, class: "muted" }, "no deployments yet")));
}

function askRollback(deployment) {
  pendingRollback = deployment;
  $("confirm-component").textContent = deployment.component;
  $("confirm-id").textContent = deployment.deployment_id;
  $("confirm-dialog").showModal();
}

async function confirmRollback(event) {
  event.preventDefault();
  const deployment = pendingRollback;
  $("confirm-dialog").close();
  pendingRollback = null;
  if (!deployment) return;
  try {
    const done = await api("/dashboard/api/rollback", { deployment_id: deployment.deployment_id, reason: $("confirm-reason").value });
    $("deployment-message").textContent = `${deployment.component}: ${done.message}`;
  } catch (error) {
    $("deployment-message").textContent = `rollback refused: ${error.message}`;
  }
  refresh();
}

async function monitoring(action) {
  $("monitoring-error").textContent = "";
  try { await api("/dashboard/api/monitoring", { action }); } catch (error) { $("monitoring-error").textContent = error.message; }
  refresh();
}

function connect() {
  if (stream) stream.close();
  stream = new EventSource("/dashboard/api/stream");
  stream.addEventListener("open", () => { $("connection").textContent = "live"; });
  stream.addEventListener("tick", scheduleRefresh);
  stream.addEventListener("change", scheduleRefresh);
  stream.addEventListener("error", () => {
    $("connection").textContent = "reconnecting…";
    api("/dashboard/api/session").then((s) => { if (!s.signed_in) showLogin(); }).catch(() => {});
  });
}

async function start() {
  const session = await api("/dashboard/api/session");
  $("sign-out").hidden = !session.needs_key;
  if (!session.signed_in) { showLogin(); return; }
  $("connection").textContent = "connecting…";
  await refresh();
  connect();
}

document.addEventListener("DOMContentLoaded", () => {
  charts = new DashboardCharts($("charts"));
  $("login-form").addEventListener("submit", signIn);
  $("start-monitoring").addEventListener("click", () => monitoring("start"));
  $("stop-monitoring").addEventListener("click", () => monitoring("stop"));
  $("event-filter").addEventListener("change", refresh);
  $("tenant").addEventListener("change", refresh);
  $("insight-window").addEventListener("change", refresh);
  $("confirm-form").addEventListener("submit", confirmRollback);
  $("confirm-no").addEventListener("click", () => { pendingRollback = null; $("confirm-dialog").close(); });
  $("sign-out").addEventListener("click", async () => { await api("/dashboard/api/logout", {}); showLogin(); });
  start().catch((error) => { $("connection").textContent = `error: ${error.message}`; });
});
