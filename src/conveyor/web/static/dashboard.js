// Conveyor dashboard: loads the server's recent history (/api/v1/history), then polls
// /api/v1/overview and redraws the tables and the two charts.
// Plain browser JavaScript, no build step; the page works (static) without it.
(function () {
  "use strict";
  const POLL_MS = 1000;
  const COLORS = ["#2b6cb0", "#c05621", "#2f855a", "#b83280", "#6b46c1", "#975a16", "#2c7a7b", "#9b2c2c"];
  const TERMINAL = new Set(["COMPLETED", "ABORTED", "UNKNOWN"]);
  const LONG_ERROR = 160;
  const MIN_SPAN_S = 120;  // the charts span the data they have, at least 2 minutes, at most the window
  const lagSeries = new Map();
  const throughputSeries = new Map();
  const openErrors = new Set();
  let windowSeconds = 15 * 60;
  let previous = null;
  let latest = null;

  const esc = (value) => String(value ?? "").replace(/[&<>"']/g, (c) => (
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const num = (value, digits) => (value === null || value === undefined ? "-" : Number(value).toFixed(digits));
  const groupKey = (c) => `${c.consumer} on ${c.stream}`;

  async function api(method, url, body) {
    const init = {method, headers: {"Accept": "application/json"}, credentials: "same-origin"};
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    if (response.status === 401) { window.location.href = "/login"; throw new Error("unauthorized"); }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) { throw new Error(data.detail || response.statusText); }
    return data;
  }

  function fill(id, rows) { document.getElementById(id).innerHTML = rows.join(""); }
  const tags = (names, kind) => (names.length
    ? names.map((n) => `<span class="tag ${kind}">${esc(n)}</span>`).join(" ") : '<span class="muted">-</span>');

  function renderNodes(nodes) {
    fill("nodes", nodes.map((n) => `<tr data-node="${esc(n.node_id)}"><td>${esc(n.node_id)}${n.this_node ? ' <span class="tag">this</span>' : ""}${n.damaged ? ` <strong class="error-text" title="${esc(n.error)}">damaged</strong>` : ""}</td>`
      + `<td>${esc(n.host)}</td><td>${num(n.heartbeat_age_s, 1)} s ago</td>`
      + `<td class="tags">${tags(n.queues, "queue")}</td><td class="tags">${tags(n.processors, "processor")}</td></tr>`));
  }

  function renderQueues(queues) {
    fill("queues", queues.map((q) => `<tr data-queue="${esc(q.id)}"><td>${esc(q.id)}</td>`
      + `<td class="num scheduled">${q.scheduled}</td><td class="num running">${q.running}</td>`
      + `<td class="num completed">${q.completed}</td><td class="num canceled">${q.canceled}</td>`
      + `<td><button class="toggle" data-queue="${esc(q.id)}" data-enabled="${q.processing}">${q.processing ? "on" : "off"}</button></td></tr>`));
  }

  function renderBulk(data) {
    if (!data.bulk_available) { return; }
    if (!data.bulk.length) { fill("bulk", ['<tr><td colspan="9" class="muted">No bulk command yet.</td></tr>']); return; }
    fill("bulk", data.bulk.map((b) => {
      const progress = b.progress || 0;
      const abort = TERMINAL.has(b.state) ? "" : `<button class="abort" data-command-id="${esc(b.command_id)}">abort</button>`;
      return `<tr data-command-id="${esc(b.command_id)}"><td class="mono">${esc(b.command_id.slice(0, 8))}</td>`
        + `<td>${esc(b.action)}</td><td>${esc(b.username)}</td><td class="state${b.damaged ? " error-text" : ""}" title="${esc(b.damaged ? b.error_message : "")}">${esc(b.damaged ? "DAMAGED" : b.state)}</td>`
        + `<td><progress class="bulk-progress" max="1" value="${progress}"></progress> <span class="pct">${(progress * 100).toFixed(1)}%</span>`
        + ` <span class="muted">${b.processed}/${b.total}</span></td>`
        + `<td class="num">${num(b.rate, 1)}</td><td class="num">${b.eta_s === null ? "-" : num(b.eta_s, 0) + " s"}</td>`
        + `<td class="num${b.error_count ? " error-text" : ""}" title="${esc(b.error_message)}">${b.error_count}</td><td>${abort}</td></tr>`;
    }));
  }

  function renderConsumers(consumers) {
    fill("consumers", consumers.map((c) => `<tr data-stream="${esc(c.stream)}" data-consumer="${esc(c.consumer)}"><td>${esc(c.stream)}</td><td class="num">${c.partitions.length}</td>`
      + `<td class="num">${c.end}</td><td>${esc(c.consumer)}</td><td class="num">${c.pos}</td>`
      + `<td class="num">${c.lag}</td><td class="num">${num(c.latency_ms / 1000, 1)} s</td>`
      + `<td><button class="delete-group" data-stream="${esc(c.stream)}" data-consumer="${esc(c.consumer)}" title="Delete this consumer group from the stream (only when no consumer of it runs)">delete</button></td></tr>`));
  }

  function renderProcessors(processors) {
    const rows = [];
    for (const p of processors) {
      for (const c of p.computations) {
        rows.push(`<tr><td>${esc(p.name)} / ${esc(c.name)}</td><td>${esc(c.state)}</td>`
          + `<td class="num">${c.running_threads}/${c.threads}</td><td class="num">${c.records}</td>`
          + `<td class="num${c.failures ? " error-text" : ""}">${c.failures}</td></tr>`);
      }
    }
    fill("processors", rows);
  }

  function errorCell(d) {
    const key = `${d.id}@${d.position || d.failed_at || ""}`;
    const error = d.error || "";
    const long = error.length > LONG_ERROR || error.includes("\n");
    let more = "";
    if (d.traceback || long) {
      const full = d.traceback ? (long ? `${error}\n\n${d.traceback}` : d.traceback) : error;
      more = `<details class="error-details" data-key="${esc(key)}"${openErrors.has(key) ? " open" : ""}>`
        + `<summary>${d.traceback ? "traceback" : "full error"}</summary><pre class="traceback">${esc(full)}</pre></details>`;
    }
    return `<td class="error-cell"><div class="error-text error-message">${esc(error)}</div>${more}</td>`;
  }

  function renderDeadLetters(data) {
    document.getElementById("dead-letter-count").textContent = `(${data.dead_letter_count})`;
    fill("dead-letters", data.dead_letters.map((d) => `<tr><td class="mono">${d.damaged ? "<strong class=\"error-text\">damaged</strong> " : ""}${esc(d.type)} ${esc(d.id.slice(0, 8))}</td>`
      + `<td>${esc(d.queue)}</td><td>${esc(d.failed_at || "-")}</td>${errorCell(d)}</tr>`));
  }

  function push(series, key, time, value) {
    if (!series.has(key)) { series.set(key, []); }
    series.get(key).push([time, value]);
  }

  function prune(series, now) {
    for (const [key, points] of series) {
      while (points.length && points[0][0] < now - windowSeconds) { points.shift(); }
      if (!points.length) { series.delete(key); }
    }
  }

  // data: an overview, or a sample of the server's history (time, consumers, queues)
  function record(data) {
    for (const c of data.consumers) { push(lagSeries, groupKey(c), data.time, c.lag); }
    if (previous && data.time > previous.time) {
      const seconds = Math.max(data.time - previous.time, 1e-3);
      const before = new Map(previous.consumers.map((c) => [groupKey(c), c.pos]));
      let consumed = 0;
      for (const c of data.consumers) {
        const key = groupKey(c);
        if (before.has(key)) { consumed += Math.max(0, c.pos - before.get(key)); }
      }
      const done = new Map(previous.queues.map((q) => [q.id, q.completed]));
      let completed = 0;
      for (const q of data.queues) { if (done.has(q.id)) { completed += Math.max(0, q.completed - done.get(q.id)); } }
      push(throughputSeries, "records/s", data.time, consumed / seconds);
      push(throughputSeries, "works/s", data.time, completed / seconds);
    }
    previous = data;
    latest = data.time;
    prune(lagSeries, data.time);
    prune(throughputSeries, data.time);
  }

  function draw(canvasId, legendId, series) {
    const canvas = document.getElementById(canvasId);
    const ctx = canvas.getContext("2d");
    const width = canvas.width, height = canvas.height, pad = 28, bottom = height - 16;
    const now = latest || Date.now() / 1000;
    const oldest = Math.min(now, ...[...series.values()].map((points) => points[0][0]));
    const span = Math.min(windowSeconds, Math.max(MIN_SPAN_S, now - oldest)), start = now - span;
    ctx.clearRect(0, 0, width, height);
    const peak = (points) => Math.max(...points.map((p) => p[1]));
    const entries = [...series.entries()].sort((a, b) => peak(b[1]) - peak(a[1])).slice(0, COLORS.length);
    const max = Math.max(1, ...entries.map(([, points]) => peak(points)));
    ctx.strokeStyle = "#cbd5e0"; ctx.fillStyle = "#4a5568"; ctx.font = "11px sans-serif"; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(pad, 4); ctx.lineTo(pad, bottom); ctx.lineTo(width - 4, bottom); ctx.stroke();
    ctx.fillText(max >= 100 ? max.toFixed(0) : max.toFixed(1), 2, 12);
    ctx.fillText("0", 2, bottom);
    ctx.fillText(`-${Math.round(span / 60)} min`, pad, height - 3);
    ctx.fillText("now", width - 26, height - 3);
    const legend = [];
    entries.forEach(([name, points], index) => {
      const color = COLORS[index];
      ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.beginPath();
      points.forEach(([time, value], i) => {
        const x = pad + (width - pad - 6) * Math.max(0, time - start) / span;
        const y = bottom - (bottom - 6) * value / max;
        if (i === 0) { ctx.moveTo(x, y); } else { ctx.lineTo(x, y); }
      });
      ctx.stroke();
      const last = points[points.length - 1][1];
      legend.push(`<span data-series="${esc(name)}" data-points="${points.length}"><i style="background:${color}"></i>${esc(name)}: ${last >= 100 ? last.toFixed(0) : last.toFixed(1)}</span>`);
    });
    document.getElementById(legendId).innerHTML = legend.join("") || '<span class="muted">no data yet</span>';
  }

  function drawCharts() {
    draw("lag-chart", "lag-legend", lagSeries);
    draw("throughput-chart", "throughput-legend", throughputSeries);
  }

  function render(data) {
    renderNodes(data.nodes);
    renderQueues(data.queues);
    renderBulk(data);
    renderConsumers(data.consumers);
    renderProcessors(data.processors);
    renderDeadLetters(data);
    document.getElementById("errors").innerHTML = Object.entries(data.errors)
      .map(([section, error]) => `<div>${esc(section)}: ${esc(error)}</div>`).join("");
    record(data);
    drawCharts();
    document.getElementById("updated").textContent = "updated " + new Date(data.time * 1000).toLocaleTimeString();
  }

  async function poll() {
    const live = document.getElementById("live");
    try {
      render(await api("GET", "/api/v1/overview"));
      live.className = "dot ok";
    } catch (error) {
      live.className = "dot failed";
      live.title = String(error);
    }
    window.setTimeout(poll, POLL_MS);
  }

  async function deleteGroup(button) {
    const {stream, consumer} = button.dataset;
    const question = `Delete consumer group "${consumer}" from stream "${stream}"?\n\n`
      + "Its committed positions are forgotten: if it consumes again, it starts where a new group starts. "
      + "Refused while a consumer of the group runs.";
    if (!window.confirm(question)) { return false; }
    button.disabled = true;
    await api("DELETE", `/api/v1/management/stream/consumer?stream=${encodeURIComponent(stream)}&consumer=${encodeURIComponent(consumer)}`);
    lagSeries.delete(`${consumer} on ${stream}`);
    return true;
  }

  document.addEventListener("toggle", (event) => {
    const target = event.target;
    if (target instanceof HTMLDetailsElement && target.dataset.key) {
      if (target.open) { openErrors.add(target.dataset.key); } else { openErrors.delete(target.dataset.key); }
    }
  }, true);

  document.addEventListener("click", async (event) => {
    const target = event.target;
    if (!(target instanceof HTMLButtonElement)) { return; }
    try {
      if (target.classList.contains("abort")) {
        target.disabled = true;
        await api("PUT", `/api/v1/bulk/${encodeURIComponent(target.dataset.commandId)}/abort`);
      } else if (target.classList.contains("toggle")) {
        const enabled = target.dataset.enabled !== "true";
        await api("PUT", `/api/v1/work/queues/${encodeURIComponent(target.dataset.queue)}/processing`, {enabled});
      } else if (target.id === "rerun-all") {
        await api("POST", "/api/v1/work/dead-letters/rerun");
      } else if (target.classList.contains("delete-group")) {
        if (!await deleteGroup(target)) { return; }
      } else {
        return;
      }
      render(await api("GET", "/api/v1/overview"));
    } catch (error) {
      target.disabled = false;
      document.getElementById("errors").textContent = String(error.message || error);
    }
  });

  async function start() {
    const initial = JSON.parse(document.getElementById("initial-data").textContent);
    const canvas = document.getElementById("lag-chart");
    try {
      const history = await api("GET", "/api/v1/history");
      windowSeconds = history.window_s || windowSeconds;
      const past = history.samples.filter((s) => s.time < initial.time);
      past.forEach(record);
      canvas.dataset.historySamples = String(past.length);
    } catch (error) {  // the charts start empty
      canvas.dataset.historySamples = "0";
    }
    record(initial);
    drawCharts();
    poll();
  }

  start();
})();
