/* /_platform/events: the platform event stream, live, filtered on t (type), r (source) and ns.
 * The newest held events come from /api/events, then /api/events/stream continues from the
 * last of them (?since=), so nothing falls between the two. Click a row for its full JSON. */
"use strict";

(() => {
  const { el, api, timeAgo, jsonBlock, oneLine, query, runLink } = Dash;

  const BACKLOG = 200;
  const ROWS_MAX = 1000;
  const SOURCES = new Set(["workflow", "kv", "db", "storage", "queue", "custom"]);

  const params = new URLSearchParams(location.search);
  const filters = { t: params.get("t") || "", r: params.get("r") || "", ns: params.get("ns") || "" };

  const rows = document.getElementById("rows");
  const empty = document.getElementById("empty");
  const summary = document.getElementById("summary");
  const pause = document.getElementById("pause");
  const inputs = { t: document.getElementById("f-t"), r: document.getElementById("f-r"), ns: document.getElementById("f-ns") };

  let stream = null;
  let lastId = 0;
  let shown = 0;
  let paused = false;
  let held = [];
  let generation = 0;

  for (const [key, input] of Object.entries(inputs)) input.value = filters[key];

  /** The data column: a workflow event's data without what the other columns show. */
  function summaryOf(event) {
    const data = event.data;
    if (event.r !== "workflow" || !data || typeof data !== "object" || Array.isArray(data)) return data;
    const { runId, workflowId, status, ...rest } = data;
    return rest;
  }

  function rowOf(event) {
    const source = SOURCES.has(event.r) ? event.r : "custom";
    const key = event.r === "workflow" && event.k ? runLink(event.k) : event.k ?? "";
    // The id cell's button unfolds the event: a row is not focusable, a button is (Enter/Space).
    const toggle = el("button", { type: "button", class: "expand", "aria-expanded": "false", title: "show the full event" }, String(event.id));
    const tr = el(
      "tr",
      { class: "clickable", dataset: { id: String(event.id), t: event.t }, title: "click for the full event" },
      el("td", { class: "num" }, toggle),
      el("td", { class: "time" }, timeAgo(event.ts)),
      el("td", {}, el("span", { class: "type" }, event.t)),
      el("td", {}, el("span", { class: "badge plain r r-" + source }, String(event.r))),
      el("td", { class: "mono clip" }, event.ns ?? ""),
      el("td", { class: "mono clip" }, key),
      el("td", { class: "mono clip" }, oneLine(summaryOf(event), 240)),
    );
    tr.addEventListener("click", (click) => {
      if (click.target.closest("a")) return;
      const after = tr.nextElementSibling;
      if (after && after.classList.contains("detail-row")) {
        after.remove();
        tr.classList.remove("expanded");
        toggle.setAttribute("aria-expanded", "false");
      } else {
        tr.classList.add("expanded");
        toggle.setAttribute("aria-expanded", "true");
        const started = el("div", { class: "started-runs note" });
        tr.after(el("tr", { class: "detail-row" }, el("td", { colspan: "7" }, started, jsonBlock(event))));
        if (event.r !== "workflow") showStarted(event.id, started);
      }
    });
    return tr;
  }

  /** The runs this event started through a workflow's event trigger, as links. */
  async function showStarted(id, box) {
    let answer;
    try {
      answer = await api(`/_platform/api/events/${id}/runs`);
    } catch {
      return;
    }
    if (!answer.runs.length) {
      box.textContent = "started no run";
      return;
    }
    box.replaceChildren("started ", ...answer.runs.flatMap((r, i) => [i ? ", " : "", runLink(r.runId), " ", Dash.badge(r.status), " ", r.workflowId]));
  }

  /** /_platform/events#event-42 (a run's "started by" link): unfold that event once it shows. */
  function openLinked() {
    const wanted = /^#event-(\d+)$/.exec(location.hash);
    if (!wanted) return;
    const row = rows.querySelector(`tr[data-id="${wanted[1]}"]`);
    if (!row || row.classList.contains("expanded")) return;
    row.classList.add("linked");
    row.querySelector("button.expand").click();
    row.scrollIntoView({ block: "center" });
  }

  function add(events) {
    const fresh = events.filter((e) => typeof e.id === "number" && e.id > lastId);
    if (!fresh.length) return;
    lastId = fresh[fresh.length - 1].id;
    rows.prepend(...fresh.reverse().map(rowOf));
    shown += fresh.length;
    while (shown > ROWS_MAX && rows.lastElementChild) {
      const last = rows.lastElementChild;
      if (!last.classList.contains("detail-row")) shown -= 1;
      last.remove();
    }
    renderSummary();
  }

  function renderSummary() {
    empty.hidden = shown > 0;
    summary.textContent = `${shown.toLocaleString()} event${shown === 1 ? "" : "s"}${paused && held.length ? ` · ${held.length} new while paused` : ""}`;
    pause.textContent = paused ? `Resume${held.length ? ` (${held.length})` : ""}` : "Pause";
    pause.setAttribute("aria-pressed", paused ? "true" : "false");
  }

  async function start() {
    const mine = ++generation;
    if (stream) stream.stop();
    stream = null;
    rows.replaceChildren();
    shown = 0;
    lastId = 0;
    held = [];
    renderSummary();
    let backlog = [];
    try {
      backlog = await api("/api/events" + query({ limit: BACKLOG, ...filters }));
    } catch (error) {
      Dash.notify("Could not load events: " + error.message, true);
    }
    if (mine !== generation) return;
    add(backlog);
    openLinked();
    stream = Dash.live(
      { ...filters, since: lastId },
      {
        onEvent(event) {
          if (paused) {
            held.push(event);
            if (held.length > ROWS_MAX) held.shift();
            renderSummary();
          } else {
            add([event]);
          }
        },
      },
    );
  }

  document.getElementById("filters").addEventListener("submit", (submit) => {
    submit.preventDefault();
    for (const [key, input] of Object.entries(inputs)) filters[key] = input.value.trim();
    history.replaceState(null, "", Dash.href("/_platform/events", filters));
    start();
  });

  pause.addEventListener("click", () => {
    paused = !paused;
    if (!paused) {
      const waiting = held;
      held = [];
      add(waiting);
    }
    renderSummary();
  });

  document.getElementById("clear").addEventListener("click", () => {
    rows.replaceChildren();
    shown = 0;
    renderSummary();
  });

  Dash.followHostClock();
  start();
})();
