// dashboard.js — svc-monitor's live dashboard, served at /static/dashboard.js
// (no framework, no inline script). Updates states, numbers and the CPU
// sparkline in place from /api/events, shows or hides the banner of a
// failing metrics store, sends the Start/Stop/Restart forms
// with fetch() and the page's CSRF token, and on /service/NAME tails the
// logs from logs/stream. Without JavaScript the page reloads itself and the
// buttons post as plain forms.
"use strict";
(function () {
  const csrfMeta = document.querySelector('meta[name="csrf"]');
  const csrf = csrfMeta ? csrfMeta.content : null;
  const sparks = {}; // service -> [{t: ms, v: cpu %}], the last 5 minutes

  function fmtBytes(n) {
    if (n === null || n === undefined) return "-";
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n.toFixed(0)) + " " + u[i];
  }
  function fmtUptime(s) {
    if (s === null || s === undefined) return "-";
    if (s >= 86400) return Math.floor(s / 86400) + "d " + Math.floor(s % 86400 / 3600) + "h";
    if (s >= 3600) return Math.floor(s / 3600) + "h " + Math.floor(s % 3600 / 60) + "m";
    if (s >= 60) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    return s + "s";
  }
  function setText(root, sel, text) {
    const el = root.querySelector(sel);
    if (el && el.textContent !== text) {
      el.textContent = text;
      el.classList.remove("flash");
      void el.offsetWidth; // restart the animation
      el.classList.add("flash");
    }
  }
  // The last 5 minutes of CPU, on a time axis like the server's sparkline.
  const SPARK_MS = 300000;
  function drawSpark(cell, points) {
    const w = 160, h = 28;
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "chart spark");
    svg.setAttribute("width", w);
    svg.setAttribute("height", h);
    const to = points.length ? points[points.length - 1].t : Date.now();
    const from = to - SPARK_MS;
    const max = Math.max(100, ...points.map((p) => p.v || 0));
    const xy = points
      .filter((p) => p.v !== null && p.t >= from)
      .map((p) => ((p.t - from) / SPARK_MS * (w - 2) + 1).toFixed(1) + "," +
                  (h - 2 - (p.v / max) * (h - 4)).toFixed(1));
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", xy.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", "#2563eb");
    line.setAttribute("stroke-width", "1.5");
    svg.appendChild(line);
    cell.replaceChildren(svg);
  }

  function onState(d) {
    document.querySelectorAll('[data-service="' + d.service + '"]').forEach((row) => {
      const badge = row.querySelector(".state");
      if (badge) {
        if (badge.textContent !== d.state) {
          badge.textContent = d.state;
          badge.className = "state " + d.state.toLowerCase();
        }
      }
      setText(row, ".pid", d.pid === null ? "-" : String(d.pid));
      setText(row, ".restarts", String(d.restarts));
      setText(row, ".uptime", fmtUptime(d.uptime_s));
      setText(row, ".workers", d.workers ? d.workers + ": " + d.worker_pids.join(" ") : "-");
      const health = row.querySelector("td.health");
      if (health && d.health) {
        const span = document.createElement("span");
        span.className = "health " + d.health.state;
        span.textContent = d.health.state;
        const parts = [span];
        if (d.health.state === "failing") {
          const why = document.createElement("small");
          why.textContent = " " + d.health.failures + "\u00d7: " + d.health.reason;
          parts.push(why);
        }
        health.replaceChildren(...parts);
      }
    });
  }
  function onSample(d) {
    d.services.forEach((s) => {
      const row = document.querySelector('tr[data-service="' + s.service + '"]');
      if (!row) return;
      setText(row, ".cpu", s.cpu_pct === null ? "-" : s.cpu_pct.toFixed(1) + " %");
      setText(row, ".rss", s.rss_bytes ? fmtBytes(s.rss_bytes) : "-");
      setText(row, ".pss", s.pss_bytes ? "PSS " + fmtBytes(s.pss_bytes) : "");
      const series = (sparks[s.service] = sparks[s.service] || []);
      series.push({ t: d.ts_ms, v: s.cpu_pct });
      while (series.length && series[0].t < d.ts_ms - SPARK_MS) series.shift();
      const cell = row.querySelector(".spark");
      if (cell) drawSpark(cell, series);
    });
    const clock = document.getElementById("clock");
    if (clock) clock.textContent = new Date(d.ts_ms).toLocaleString();
  }

  // The banner the server puts above a page while the store cannot be
  // written, kept in step with the "monitor" events.
  function onMonitor(d) {
    let banner = document.getElementById("store-banner");
    if (d.store.ok) {
      if (banner) banner.remove();
      return;
    }
    if (!banner) {
      banner = document.createElement("div");
      banner.id = "store-banner";
      banner.className = "banner";
      banner.setAttribute("role", "alert");
      const since = document.createElement("span");
      since.className = "since";
      const error = document.createElement("b");
      error.className = "error";
      banner.append("The metrics store cannot be written since ", since, ": ",
                    error, ". Services are still supervised; samples and " +
                    "log lines are not saved until it recovers.");
      const main = document.querySelector("main");
      if (main) main.prepend(banner);
    }
    banner.querySelector(".since").textContent =
      new Date(d.store.since_ms).toLocaleString();
    banner.querySelector(".error").textContent = d.store.error; // never markup
  }

  // The sparkline starts from the last 5 minutes of samples.
  function loadSparks() {
    document.querySelectorAll("tr[data-service]").forEach((row) => {
      const name = row.dataset.service;
      fetch("/api/services/" + encodeURIComponent(name) + "/metrics")
        .then((r) => r.json())
        .then((m) => {
          const live = sparks[name] || [];
          const first = live.length ? live[0].t : Infinity;
          const old = m.points.filter((p) => p.ts_ms < first)
                              .map((p) => ({ t: p.ts_ms, v: p.cpu_pct }));
          sparks[name] = old.concat(live);
          const cell = row.querySelector(".spark");
          if (cell && sparks[name].length) drawSpark(cell, sparks[name]);
        })
        .catch(() => {});
    });
  }

  function connectEvents() {
    const es = new EventSource("/api/events");
    es.addEventListener("state", (e) => onState(JSON.parse(e.data)));
    es.addEventListener("sample", (e) => onSample(JSON.parse(e.data)));
    es.addEventListener("monitor", (e) => onMonitor(JSON.parse(e.data)));
    document.body.classList.add("live");
  }

  // The buttons: fetch with the CSRF header, the page stays.
  document.addEventListener("submit", (e) => {
    const form = e.target;
    if (!csrf || !form.action.includes("/api/services/")) return;
    e.preventDefault();
    const button = form.querySelector("button");
    if (button) button.disabled = true;
    fetch(form.action, { method: "POST", headers: { "X-CSRF-Token": csrf } })
      .then((r) => { if (!r.ok) alert("svc-monitor: " + r.status + " " + r.statusText); })
      .catch((err) => alert("svc-monitor: " + err))
      .finally(() => { if (button) button.disabled = false; });
  });

  // /service/NAME: the live tail of stdout and stderr.
  function tail(box, service) {
    const stream = box.dataset.stream;
    const pause = document.querySelector('button.pause[data-stream="' + stream + '"]');
    let paused = false, held = [];
    const table = document.createElement("table");
    table.className = "rows";
    const body = document.createElement("tbody");
    table.appendChild(body);
    let first = true;
    function add(d) {
      const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
      const tr = document.createElement("tr");
      const ts = document.createElement("td");
      ts.className = "ts";
      ts.textContent = new Date(d.ts_ms).toLocaleTimeString();
      const td = document.createElement("td");
      td.className = "line";
      td.textContent = d.line; // never markup
      tr.append(ts, td);
      body.appendChild(tr);
      while (body.rows.length > 1000) body.deleteRow(0);
      if (atBottom) box.scrollTop = box.scrollHeight;
    }
    const es = new EventSource("/api/services/" + encodeURIComponent(service) +
                               "/logs/stream?stream=" + stream);
    es.addEventListener("line", (e) => {
      if (first) { box.replaceChildren(table); first = false; }
      const d = JSON.parse(e.data);
      if (paused) held.push(d); else add(d);
      box.scrollTop = box.scrollHeight;
    });
    if (pause) {
      pause.hidden = false;
      pause.addEventListener("click", () => {
        paused = !paused;
        pause.textContent = paused ? "Resume" : "Pause";
        if (!paused) { held.forEach(add); held = []; }
      });
    }
  }

  const title = document.querySelector("h1[data-service]");
  if (title) {
    document.querySelectorAll(".log[data-stream]").forEach((box) => tail(box, title.dataset.service));
  } else if (document.getElementById("services")) {
    loadSparks();
  }
  connectEvents();
})();
