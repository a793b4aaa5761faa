// orch dashboard: no framework, no CDN. Every text from a job goes through esc() or textContent.
"use strict";
const params = new URLSearchParams(location.search);
if (params.get("token")) sessionStorage.setItem("orchToken", params.get("token"));
const TOKEN = sessionStorage.getItem("orchToken") || "";
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];
const MAX_DOTS = 150, MAX_LINE_POINTS = 600;
const FIRST = ["loss", "learning_rate", "grad_norm", "tokens_per_second"];

function esc(text) {
  return String(text ?? "").replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}
function withToken(path) { return TOKEN ? path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(TOKEN) : path; }
async function api(path, options = {}) {
  const response = await fetch(path, {...options, headers: {"X-Orch-Token": TOKEN, "Content-Type": "application/json"}});
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || response.status);
  return body;
}
function age(seconds) {
  if (seconds < 60) return seconds + " s"; if (seconds < 3600) return Math.floor(seconds / 60) + " min";
  if (seconds < 86400) return (seconds / 3600).toFixed(1) + " h"; return (seconds / 86400).toFixed(1) + " d";
}
function bar(fraction) {
  if (fraction === null || fraction === undefined) return "";
  return `<div class="bar" title="${(100 * fraction).toFixed(0)}%"><div style="width:${(100 * fraction).toFixed(1)}%"></div></div>`;
}

// ---------------------------------------------------------------------------------------------- the job list
async function showJobs() {
  const jobs = await api("/api/jobs");
  document.querySelector("#jobs tbody").innerHTML = jobs.map(j => `<tr data-job="${esc(j.id)}">
    <td><a href="${esc(withToken("/jobs/" + j.id))}">${esc(j.id)}</a></td><td>${esc(j.name)}</td>
    <td><span class="state ${esc(j.state)}">${esc(j.state)}</span></td><td>${esc(j.nodes.join(", "))}</td>
    <td>${bar(j.progress)}</td><td>${age(j.age_s)}</td><td>${esc((j.root_cause || "").split("\n")[0])}</td></tr>`).join("");
}

// ------------------------------------------------------------------------------------------------- one job
const JOB_ID = decodeURIComponent(location.pathname.split("/").pop());
let lastJob = null;

function fmt(value, digits = 3) {
  if (value === null || value === undefined) return "-";
  if (value !== 0 && Math.abs(value) < 0.01) return Number(value).toExponential(digits - 1);
  return Math.abs(value) >= 1000 ? Math.round(value).toLocaleString() : Number(value).toPrecision(digits);
}
function ms(seconds) { return seconds === null || seconds === undefined ? "-" : (1000 * seconds).toFixed(1) + " ms"; }

function renderGrid(job) {
  const rows = job.nodes.map(node => {
    const ranks = job.ranks.filter(r => r.node === node.name);
    const gpus = (job.gpus[node.name] || []).map(g => `gpu${g.index} ${g.util}% ${g.mem_used}/${g.mem_total} MiB`).join("<br>");
    const rankCells = ranks.map(r => `<td class="rank${r.straggler ? " straggler" : ""}" data-rank="${esc(r.rank)}">
      <b>rank ${esc(r.rank)}</b>${r.straggler ? ' <span class="straggler-mark">straggler</span>' : ""}<br>
      step ${esc(r.step)}<br>compute ${ms(r.compute_s)}<br>data wait ${ms(r.data_wait_s)}<br>
      ${r.tokens_per_s ? fmt(r.tokens_per_s) + " tokens/s" : ""}</td>`).join("");
    return `<tr><td class="node cell ${esc(node.state)}" data-node="${esc(node.name)}" data-state="${esc(node.state)}">
      <b>${esc(node.name)}</b> <small>node_rank ${esc(node.rank)}</small><br>
      <span class="state ${esc(node.state)}">${esc(node.state)}</span>
      ${node.exit_code === null ? "" : " exit " + esc(node.exit_code)}
      <div class="last" title="${esc(node.last_line)}">${esc(node.last_line)}</div>${gpus ? "<small>" + gpus + "</small>" : ""}</td>
      ${rankCells}</tr>`;
  });
  document.querySelector("#grid tbody").innerHTML = rows.join("");
}

function chart(name, runs) {
  const W = 360, H = 180, L = 54, B = 22, T = 18, R = 8;
  const points = runs.flatMap(run => run.points);
  const xs = points.map(p => p[0]), ys = points.map(p => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = x => L + (x1 === x0 ? (W - L - R) / 2 : (x - x0) / (x1 - x0) * (W - L - R));
  const sy = y => T + (y1 === y0 ? (H - T - B) / 2 : (1 - (y - y0) / (y1 - y0)) * (H - T - B));
  const lines = runs.map((run, i) => {
    const color = COLORS[i % COLORS.length];
    const every = Math.ceil(run.points.length / MAX_LINE_POINTS);  // a long run's line is thinned, its ends kept
    const line = run.points.filter((p, k) => k % every === 0 || k === run.points.length - 1);
    const path = line.map(p => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
    const dots = run.points.length > MAX_DOTS ? "" : run.points.map(p => `<circle cx="${sx(p[0]).toFixed(1)}" cy="${sy(p[1]).toFixed(1)}" r="2.5" fill="${color}" data-step="${p[0]}"><title>${esc(run.id)} step ${p[0]}: ${p[1]}</title></circle>`).join("");
    return `<g data-job="${esc(run.id)}"><polyline fill="none" stroke="${color}" stroke-width="1.5" points="${path}"/>${dots}</g>`;
  }).join("");
  return `<svg class="chart" id="chart-${esc(name)}" data-metric="${esc(name)}" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">
    <text x="${L}" y="12" font-weight="bold">${esc(name)}</text>
    <line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#999"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#999"/>
    <text x="${L - 4}" y="${T + 4}" text-anchor="end">${fmt(y1)}</text><text x="${L - 4}" y="${H - B}" text-anchor="end">${fmt(y0)}</text>
    <text x="${L}" y="${H - 6}">${esc(x0)}</text><text x="${W - R}" y="${H - 6}" text-anchor="end">step ${esc(x1)}</text>${lines}</svg>`;
}

async function renderCharts(job) {
  const ids = (document.getElementById("compare").value || "").split(/[\s,]+/).filter(Boolean);
  const others = await Promise.all(ids.map(id => api("/api/jobs/" + encodeURIComponent(id)).catch(() => null)));
  const runs = [job, ...others.filter(Boolean)];
  const names = Object.keys(job.metrics);
  runs.slice(1).forEach(r => Object.keys(r.metrics).forEach(n => names.includes(n) || names.push(n)));
  const skip = new Set(["total_flos", "train_runtime", "train_samples_per_second", "train_steps_per_second", "eval_runtime",
                        "eval_samples_per_second", "eval_steps_per_second"]);
  const ordered = [...FIRST.filter(n => names.includes(n)), ...names.filter(n => !FIRST.includes(n) && !skip.has(n)).sort()];
  const legend = runs.length > 1 ? `<div class="legend">${runs.map((r, i) => `<span style="color:${COLORS[i % COLORS.length]}">&#9632; ${esc(r.id)}</span>`).join("")}</div>` : "";
  document.getElementById("charts").innerHTML = legend + ordered.map(name => chart(name,
    runs.map(r => ({id: r.id, points: r.metrics[name] || []})).filter(r => r.points.length))).join("");
}

function renderHangs(job) {
  document.getElementById("hangs-section").hidden = !job.hangs.length;
  document.getElementById("hangs").innerHTML = job.hangs.map(report => `<h3>${esc(report.name)}</h3>` +
    report.groups.map(g => `<details><summary>${esc(g.who.join(", "))}: ${esc(g.where)}</summary><pre>${esc(g.stack)}</pre></details>`).join("")).join("");
}

function renderFacts(job) {
  document.title = `orch ${job.id} ${job.state}`;
  document.getElementById("title").textContent = `job ${job.id} · ${job.name}`;
  const state = document.getElementById("state");
  state.textContent = job.state; state.className = "badge " + job.state;
  const p = job.progress;
  document.getElementById("progress").innerHTML = p ? `${bar(p.total ? p.step / p.total : null)} step ${esc(p.step)}/${esc(p.total)}, epoch ${esc(p.epoch)}, loss ${fmt(p.loss)}, ${fmt(p.tokens_per_s)} tokens/s${p.eta_s !== null && p.eta_s !== undefined ? ", ETA " + age(p.eta_s) : ""}` : "";
  const s = job.scheduler;
  const queued = s && (s.job_id || s.state || s.reason);  // a scheduler with a queue of its own (Slurm)
  document.getElementById("queue").textContent = queued ? `${job.scheduler_title} job ${s.job_id || "-"}: ${s.state || "-"}${s.reason ? " (" + s.reason + ")" : ""}` : "";
  const cause = document.getElementById("root-cause");
  cause.hidden = !job.root_cause; cause.textContent = job.root_cause ? "root cause: " + job.root_cause : "";
  document.getElementById("stragglers").innerHTML = job.stragglers.map(s => `<li class="straggler-mark">straggler: rank ${esc(s.rank)} on ${esc(s.node)}: ${esc(s.what)} ${s.ratio ? esc(s.ratio) + "x" : "far above"} the median of the others</li>`).join("");
  const exclude = document.getElementById("exclude");
  if (exclude.options.length === 1) job.nodes.forEach(n => exclude.add(new Option("without " + n.name, n.name)));
  const logNode = document.getElementById("log-node");
  if (!logNode.options.length) {
    logNode.add(new Option("rank 0", ""));
    job.nodes.forEach(n => logNode.add(new Option(n.name, n.name)));
    logNode.add(new Option("all nodes", "all"));
  }
}

async function showJob() {
  const job = await api("/api/jobs/" + encodeURIComponent(JOB_ID));
  lastJob = job;
  renderFacts(job); renderGrid(job); renderHangs(job);
  await renderCharts(job);
}

let source = null, logLines = [];
function renderLog() {
  const filter = document.getElementById("log-filter").value;
  const pre = document.getElementById("log");
  const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  pre.textContent = logLines.filter(l => !filter || l.includes(filter)).join("\n");
  if (atEnd) pre.scrollTop = pre.scrollHeight;
}
function openLog() {
  if (source) source.close();
  logLines = []; renderLog();
  const node = document.getElementById("log-node").value;
  source = new EventSource(withToken(`/api/jobs/${encodeURIComponent(JOB_ID)}/logs?node=${encodeURIComponent(node)}`));
  source.onmessage = e => { logLines.push(e.data); if (logLines.length > 5000) logLines.splice(0, 1000); renderLog(); };
  source.addEventListener("end", () => source.close());
}

async function act(kind) {
  const out = document.getElementById("action-result");
  out.textContent = kind + "...";
  const body = kind === "restart" ? {exclude: document.getElementById("exclude").value || null} : {};
  try {
    const result = await api(`/api/jobs/${encodeURIComponent(JOB_ID)}/${kind}`, {method: "POST", body: JSON.stringify(body)});
    out.textContent = result.output || (result.ok ? "done" : "failed");
    if (kind === "restart" && result.job) location.href = withToken("/jobs/" + result.job);
  } catch (error) { out.textContent = kind + " refused: " + error.message; }
  showJob();
}

function every(seconds, fn) { fn().catch(() => {}); setInterval(() => fn().catch(() => {}), seconds * 1000); }

if (document.body.dataset.page === "index") every(3, showJobs);
if (document.body.dataset.page === "job") {
  document.getElementById("home").href = withToken("/");
  document.getElementById("stop").onclick = () => act("stop");
  document.getElementById("restart").onclick = () => act("restart");
  document.getElementById("log-node").onchange = openLog;
  document.getElementById("log-filter").oninput = renderLog;
  document.getElementById("compare").value = params.get("compare") || "";
  document.getElementById("compare").onchange = () => lastJob && renderCharts(lastJob);
  every(2, showJob);
  const started = setInterval(() => { if (document.getElementById("log-node").options.length) { clearInterval(started); openLog(); } }, 100);
}
