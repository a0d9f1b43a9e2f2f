// The monitoring page: every figure comes from the API with the key the person enters. Amounts are
// shown as the API's decimal strings (never parsed into floating point); data goes into the page as
// text, never as HTML.
"use strict";

const COLORS = ["#0969da", "#bf3989", "#1a7f37", "#9a6700", "#8250df", "#cf222e"];
// `generation` counts refreshes: a response of an older one (the filters changed meanwhile) is dropped.
const state = { key: sessionStorage.getItem("txmon-key") || "", regions: [], cursor: null, generation: 0 };
const $ = (id) => document.getElementById(id);

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function api(path, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined && value !== "") query.set(name, value);
  }
  const response = await fetch(`${path}?${query}`, { headers: { Authorization: `Bearer ${state.key}` } });
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(`${path}: ${body.error || response.status}`);
  return body;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function utcDay(offsetDays, from) {
  const d = from ? new Date(`${from}T00:00:00Z`) : new Date();
  d.setUTCDate(d.getUTCDate() + offsetDays);
  return d.toISOString().slice(0, 10);
}

function filters() {
  return { date: $("day").value, region: $("region").value };
}

// ------------------------------------------------------------------ suspicious activity
// The groups the AML typologies found: how many transactions, their total in USD, the window (ids in the tooltip).
function describeEvidence(evidence) {
  if (!evidence) return "";
  const parts = [];
  const s = evidence.structuring;
  if (s) parts.push(`structuring: ${s.transactions} near ${s.threshold_usd} USD, ${s.total_usd} USD within ${s.window_hours} h`);
  const v = evidence.velocity;
  if (v) parts.push(`velocity: ${v.transactions} in ${v.window_minutes} min (over ${v.max_transactions})`);
  return parts.join("; ");
}

async function loadSuspicious(append) {
  const body = $("suspicious").tBodies[0];
  const generation = state.generation;
  $("more").disabled = true;
  const page = await api("/suspicious", {
    ...filters(), reason: $("reason").value, limit: 100, cursor: append ? state.cursor : null,
  });
  if (generation !== state.generation) return;  // the filters changed while it loaded
  $("more").disabled = false;
  if (!append) body.replaceChildren();
  for (const item of page.items) {
    const row = body.insertRow();
    row.dataset.transactionId = item.transaction_id;
    cell(row, item.event_time.replace("T", " ").slice(0, 19));
    cell(row, item.region);
    cell(row, item.transaction_id, "id");
    cell(row, item.account_id, "id");
    cell(row, item.amount, "num amount");
    cell(row, item.currency);
    cell(row, item.amount_usd, "num");
    cell(row, item.status);
    cell(row, item.reasons.join(", "));
    const evidence = cell(row, describeEvidence(item.evidence));
    if (item.evidence) evidence.title = Object.entries(item.evidence)
      .map(([reason, group]) => `${reason}: ${group.transaction_ids.join(", ")}`).join("\n");
  }
  state.cursor = page.next_cursor;
  $("more").hidden = !state.cursor;
  $("suspicious-count").textContent = `(${body.rows.length} shown${state.cursor ? ", more below" : ""})`;
}

// ------------------------------------------------------------------ settlements: table and chart
function svg(tag, attributes) {
  const element = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  return element;
}

function drawChart(days, byDay, regions) {
  const width = 1000, height = 240, left = 60, bottom = 30, top = 10;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height + 20}`, id: "settlements-chart" });
  let max = 1;
  for (const day of days) for (const region of regions) max = Math.max(max, byDay[day][region] || 0);
  const slot = (width - left) / days.length;
  const bar = Math.max(2, (slot - 6) / regions.length);
  chart.appendChild(svg("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, stroke: "#8c959f" }));
  for (const tick of [0, 0.5, 1]) {
    const y = height - bottom - tick * (height - bottom - top);
    const label = svg("text", { x: left - 6, y: y + 4, "text-anchor": "end", "font-size": 11 });
    label.textContent = Math.round(max * tick).toLocaleString("en-US");
    chart.appendChild(label);
  }
  days.forEach((day, i) => {
    regions.forEach((region, j) => {
      const value = byDay[day][region] || 0;
      const h = (value / max) * (height - bottom - top);
      const rect = svg("rect", {
        x: left + i * slot + 3 + j * bar, y: height - bottom - h, width: bar - 1, height: h,
        fill: COLORS[j % COLORS.length], "data-region": region, "data-day": day, "data-value": value,
      });
      const title = svg("title", {});
      title.textContent = `${day} ${region}: ${value.toLocaleString("en-US")} settled`;
      rect.appendChild(title);
      chart.appendChild(rect);
    });
    const label = svg("text", { x: left + i * slot + slot / 2, y: height - bottom + 16, "text-anchor": "middle", "font-size": 11 });
    label.textContent = day.slice(5);
    chart.appendChild(label);
  });
  const legend = document.createElement("p");
  legend.className = "legend";
  regions.forEach((region, j) => {
    const span = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = COLORS[j % COLORS.length];
    span.append(swatch, region);
    legend.appendChild(span);
  });
  $("chart").replaceChildren(chart, legend);
}

async function loadSettlements() {
  const { date, region } = filters();
  const generation = state.generation;
  const days = Array.from({ length: 14 }, (_, i) => utcDay(i - 13, date));
  const pages = await Promise.all(days.map((day) => api("/settlements", { date: day, region })));
  if (generation !== state.generation) return;
  const byDay = {};
  const regions = region ? [region] : state.regions;
  days.forEach((day, i) => {
    byDay[day] = {};
    for (const item of pages[i].items) byDay[day][item.region] = (byDay[day][item.region] || 0) + item.settled_count;
  });
  drawChart(days, byDay, regions);
  const body = $("settlements").tBodies[0];
  body.replaceChildren();
  for (const item of pages[days.length - 1].items) {
    const row = body.insertRow();
    cell(row, item.region);
    cell(row, item.currency);
    cell(row, item.transaction_count.toLocaleString("en-US"), "num");
    cell(row, item.settled_count.toLocaleString("en-US"), "num");
    cell(row, item.settled_volume, "num");
  }
  if (!body.rows.length) {
    const row = body.insertRow();
    cell(row, "nothing published for this day: a day's settlements publish once it has closed (00:15 UTC)", "muted").colSpan = 5;
  }
}

// ------------------------------------------------------------------ partitions
function age(iso) {
  if (!iso) return "";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 120) return `${Math.round(seconds)} s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

// A table of the chosen day: a row per item of `path`, filled by `fill`, or a note when there is none.
async function loadDayTable(path, id, fill, none, columns) {
  const generation = state.generation;
  const page = await api(path, filters());
  if (generation !== state.generation) return;
  const body = $(id).tBodies[0];
  body.replaceChildren();
  for (const item of page.items) fill(body.insertRow(), item);
  if (!page.items.length) cell(body.insertRow(), none, "muted").colSpan = columns;
}

function loadPartitions() {
  return loadDayTable("/partitions", "partitions", (row, item) => {
    const checks = Object.entries(item.checks);
    const passed = checks.filter(([, c]) => c.passed).length;
    cell(row, item.region);
    cell(row, item.table_name);
    cell(row, `${item.published_at.replace("T", " ").slice(0, 19)} (${age(item.published_at)})`);
    cell(row, age(item.staging_as_of));
    cell(row, item.row_count.toLocaleString("en-US"), "num");
    const status = cell(row, `${passed}/${checks.length} passed`, passed === checks.length ? "ok" : "bad");
    status.title = checks.map(([name, c]) => `${name}: ${c.summary || (c.passed ? "passed" : "failed")}`).join("\n");
  }, "nothing published for this day yet", 6);
}

// ------------------------------------------------------------------ report packages
async function download(url, name) {
  // The files need the key: fetched with it, then saved from memory.
  const response = await fetch(url, { headers: { Authorization: `Bearer ${state.key}` } });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = name;
  link.click();
  URL.revokeObjectURL(link.href);
}

function loadReports() {
  return loadDayTable("/reports", "reports", (row, item) => {
    cell(row, item.region);
    cell(row, item.supersedes ? `v${item.version} (supersedes v${item.supersedes})` : `v${item.version}`);
    const status = cell(row, item.verified ? "verified" : "NOT verified", item.verified ? "ok" : "bad");
    status.title = item.verified ? "signature and every file's hash verify" : item.problems.join("\n");
    cell(row, item.control_totals.transactions.toLocaleString("en-US"), "num");
    cell(row, item.control_totals.suspicious.toLocaleString("en-US"), "num");
    const files = cell(row, "");
    const all = [...item.files, { name: "manifest.json", url: item.manifest_url }, { name: "manifest.sig", url: item.signature_url }];
    for (const file of all) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "link";
      button.textContent = file.name;
      const saved = `${item.region}-${item.date}-v${item.version}-${file.name}`;
      button.addEventListener("click", () => download(file.url, saved).catch((error) => showError(error.message)));
      files.appendChild(button);
    }
  }, "no package for this day: one is built when a closed day's settlements are published", 6);
}

async function refresh() {
  state.generation += 1;
  state.cursor = null;
  showError("");
  try {
    await Promise.all([loadSuspicious(false), loadSettlements(), loadPartitions(), loadReports()]);
  } catch (error) {
    showError(error.message);
  }
}

async function useKey(key) {
  state.key = key;
  try {
    const me = await api("/me");
    sessionStorage.setItem("txmon-key", key);
    state.regions = me.regions;
    $("who").textContent = `${me.role} key, regions ${me.regions.join(", ")}`;
    const select = $("region");
    select.replaceChildren(select.options[0]);
    for (const region of me.regions) select.add(new Option(region, region));
    $("main").hidden = false;
    await refresh();
  } catch (error) {
    $("main").hidden = true;
    showError(error.message);
  }
}

$("key-form").addEventListener("submit", (event) => { event.preventDefault(); useKey($("key").value.trim()); });
$("day").value = utcDay(0);
$("today").addEventListener("click", () => { $("day").value = utcDay(0); refresh(); });
$("refresh").addEventListener("click", refresh);
for (const id of ["day", "region", "reason"]) $(id).addEventListener("change", refresh);
$("more").addEventListener("click", () => loadSuspicious(true).catch((error) => showError(error.message)));
if (state.key) { $("key").value = state.key; useKey(state.key); }
