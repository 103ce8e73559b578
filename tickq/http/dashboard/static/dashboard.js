// tickq dashboard: live counts over Server-Sent Events, and "select all" on the DLQ page.
// Pages work without this file; it only keeps them current. No inline scripts (CSP).
"use strict";

function applySnapshot(snapshot) {
  for (const queue of snapshot.queues || []) {
    const row = document.querySelector(`tr[data-queue="${CSS.escape(queue.name)}"]`);
    if (!row) continue;
    for (const cell of row.querySelectorAll("td[data-count]")) {
      const key = cell.dataset.count;
      let text;
      if (key === "paused") text = queue.paused ? "yes" : "no";
      else if (key === "oldest") text = formatAge(queue.oldest_s);
      else text = String(queue[key]);
      if (cell.textContent !== text) cell.textContent = text;
    }
  }
  const charts = snapshot.charts || {};
  for (const [key, series] of Object.entries(charts)) {
    for (const [name, points] of Object.entries(series)) {
      const line = document.querySelector(
        `[data-chart="${CSS.escape(key)}"] polyline[data-series="${CSS.escape(name)}"]`);
      if (line) line.setAttribute("points", points);
    }
  }
}

function formatAge(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

function startLive() {
  const marker = document.querySelector("[data-live]");
  if (!marker || !window.EventSource) return;
  const state = marker.querySelector(".live-state");
  const source = new EventSource(marker.dataset.live);
  source.addEventListener("open", () => {
    marker.classList.add("on");
    if (state) state.textContent = "Live.";
  });
  source.addEventListener("error", () => {
    marker.classList.remove("on");
    if (state) state.textContent = "Reconnecting…";
  });
  source.addEventListener("counts", (event) => applySnapshot(JSON.parse(event.data)));
  window.addEventListener("pagehide", () => source.close());
}

function selectAll() {
  const all = document.getElementById("select-all");
  if (!all) return;
  all.addEventListener("change", () => {
    for (const box of document.querySelectorAll('input[type="checkbox"][name="job"]')) {
      box.checked = all.checked;
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  startLive();
  selectAll();
});
