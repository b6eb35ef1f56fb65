/* /_platform/: runs newest first, filtered by workflow and status, kept live from the stream.
 *
 * The table is a window onto the server's list: the first page comes from
 * /_platform/api/runs, older pages through its `before` cursor. Stream events update rows at
 * once (a new run is put on top), and each burst of events is followed by a refetch of the
 * loaded window and the counts, so the table always converges on what the server holds. */
"use strict";

(() => {
  const { el, api, badge, runLink, timeAgo, fmtDuration, query, STATUSES, TERMINAL } = Dash;

  const PAGE = 50;
  const WINDOW_MAX = 500; // rows a refresh refetches; older loaded rows are kept as they are
  const ROWS_MAX = 5000;

  const params = new URLSearchParams(location.search);
  const filters = {
    workflow: params.get("workflow") || "",
    status: params.get("status") || "",
    q: params.get("q") || "",
    from: params.get("from") || "",
    to: params.get("to") || "",
  };
  // A search (?q=, ?from=, ?to=) lists what /_platform/api/runs/search finds instead of the
  // plain newest-first list; live events then update the rows shown but add none.
  const searching = () => Boolean(filters.q || filters.from || filters.to);
  let scanned = 0;
  let autoSearch = 0; // older search pages fetched without a click (few matches so far)
  const AUTO_SEARCH_MAX = 10;

  let model = []; // run summaries, newest first
  let next = null; // `before` cursor of the next older page
  let loaded = false;
  let asked = 0; // refetches started; an answer older than the last one applied is dropped
  let applied = 0;
  let workflowsShown = "";
  let overview = null; // the last counts from the host, adjusted by events since
  const statusOf = new Map(); // run id -> the last status seen, to move counts between statuses
  const fresh = new Set(); // run ids to flash when next rendered
  const rowCache = new Map(); // run id -> {key, tr}

  const rows = document.getElementById("rows");
  const counts = document.getElementById("counts");
  const workflowSelect = document.getElementById("f-workflow");
  const statusSelect = document.getElementById("f-status");
  const summary = document.getElementById("summary");
  const empty = document.getElementById("empty");
  const older = document.getElementById("older");
  const qInput = document.getElementById("q");
  const fromInput = document.getElementById("f-from");
  const toInput = document.getElementById("f-to");
  const clearSearch = document.getElementById("search-clear");

  const pad = (n) => String(n).padStart(2, "0");
  /** epoch ms -> the value of a datetime-local input (the browser's local time). */
  function localInput(ms) {
    if (!ms) return "";
    const d = new Date(Number(ms));
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function fromLocalInput(value) {
    const ms = value ? new Date(value).getTime() : NaN;
    return Number.isNaN(ms) ? "" : String(ms);
  }
  qInput.value = filters.q;
  fromInput.value = localInput(filters.from);
  toInput.value = localInput(filters.to);

  for (const status of STATUSES) statusSelect.append(el("option", { value: status }, status.replace("_", " ")));
  statusSelect.value = filters.status;

  function matches(run) {
    return (!filters.workflow || run.workflowId === filters.workflow) && (!filters.status || run.status === filters.status);
  }

  function errorText(run) {
    const e = run.error;
    if (!e || run.status === "cancelled") return "";
    const where = e.step ? `[${e.step}] ` : "";
    return `${where}${e.type || "Error"}: ${e.message ?? ""}`;
  }

  function durationCell(run) {
    if (TERMINAL.has(run.status)) {
      const end = run.completedAt ?? run.updatedAt;
      return el("td", { class: "time" }, fmtDuration(end - run.createdAt));
    }
    return el("td", { class: "time elapsed", dataset: { since: String(run.createdAt) } }, fmtDuration(Dash.now() - run.createdAt));
  }

  function rowFor(run) {
    const key = JSON.stringify(run);
    const cached = rowCache.get(run.runId);
    if (cached && cached.key === key) return cached.tr;
    const error = errorText(run);
    const tr = el(
      "tr",
      { dataset: { runId: run.runId, status: run.status } },
      el("td", { class: "id", title: run.runId }, runLink(run.runId)),
      el(
        "td",
        { class: "wf", title: run.parentRunId ? `${run.workflowId}, invoked by run ${run.parentRunId}` : run.workflowId },
        run.parentRunId ? el("span", { class: "muted" }, "↳ ") : null,
        run.workflowId,
      ),
      el("td", {}, badge(run.status)),
      el("td", { class: "num" }, String(run.attempt)),
      el("td", { class: "time" }, timeAgo(run.createdAt)),
      durationCell(run),
      el("td", { class: "err", title: error || null }, error),
    );
    tr.addEventListener("animationend", () => tr.classList.remove("fresh"));
    rowCache.set(run.runId, { key, tr });
    return tr;
  }

  let renderQueued = false;
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      render();
    });
  }

  function render() {
    const keep = new Set();
    const trs = model.map((run) => {
      keep.add(run.runId);
      const tr = rowFor(run);
      if (fresh.has(run.runId)) tr.classList.add("fresh");
      return tr;
    });
    fresh.clear();
    for (const id of rowCache.keys()) if (!keep.has(id)) rowCache.delete(id);
    const current = rows.children;
    const same = current.length === trs.length && trs.every((tr, i) => current[i] === tr);
    if (!same) rows.replaceChildren(...trs);
    empty.hidden = !loaded || model.length > 0;
    older.hidden = !next;
    older.textContent = searching() ? "Search older runs" : "Load older runs";
    clearSearch.hidden = !searching();
    const n = model.length.toLocaleString();
    if (!loaded) summary.textContent = "loading…";
    else if (searching()) summary.textContent = `${n} match${model.length === 1 ? "" : "es"} in the newest ${scanned.toLocaleString()} runs searched${next ? " (search older for more)" : ""}`;
    else summary.textContent = `${n} run${model.length === 1 ? "" : "s"} shown${next ? " (more below)" : ""}`;
  }

  function renderOverview() {
    if (!overview) return;
    const chip = (status, label, n) =>
      el(
        "button",
        {
          type: "button",
          class: "count" + (status ? " s-" + status : "") + (filters.status === status ? " current" : ""),
          "aria-pressed": filters.status === status ? "true" : "false",
          dataset: { status: status || "all" },
          title: status ? `show only ${label} runs` : "show runs in any status",
          onclick: () => setFilter("status", filters.status === status ? "" : status),
        },
        el("span", { class: "n" }, n.toLocaleString()),
        el("span", { class: "label" }, label),
      );
    counts.replaceChildren(
      chip("", filters.workflow ? `all ${filters.workflow} runs` : "all runs", overview.total),
      ...STATUSES.map((s) => chip(s, s.replace("_", " "), overview.counts[s] || 0)),
    );
    const ids = [...overview.workflows];
    if (filters.workflow && !ids.includes(filters.workflow)) ids.push(filters.workflow);
    const shown = ids.join("\n");
    if (shown !== workflowsShown) {
      workflowsShown = shown;
      workflowSelect.replaceChildren(el("option", { value: "" }, "all workflows"), ...ids.map((id) => el("option", { value: id }, id)));
    }
    workflowSelect.value = filters.workflow;
  }

  // ------------------------------------------------------------------------ bulk actions

  const bulkBox = document.getElementById("bulk");
  let bulkFor = ""; // the filter the bulk bar was built for
  let bulkSteps = []; // step names of the newest run in the list (for "rerun from")

  /** "12 waiting event runs of flaky-payment": how the confirmation names what it acts on. */
  function bulkNoun(n) {
    const status = filters.status.replace("_", " ");
    return `${n.toLocaleString()} ${status} run${n === 1 ? "" : "s"}` + (filters.workflow ? ` of ${filters.workflow}` : "");
  }

  async function renderBulk() {
    const key = JSON.stringify([filters.workflow, filters.status, searching(), overview ? overview.counts[filters.status] : 0]);
    if (key === bulkFor) return;
    bulkFor = key;
    const n = overview && filters.status ? overview.counts[filters.status] || 0 : 0;
    if (!filters.status || searching() || !n) {
      bulkBox.hidden = true;
      bulkBox.replaceChildren();
      return;
    }
    const parts = [el("span", { class: "muted" }, `All ${bulkNoun(n)}:`)];
    if (!TERMINAL.has(filters.status)) {
      parts.push(el("button", { type: "button", id: "bulk-cancel", class: "danger", onclick: () => runBulk("cancel") }, `Cancel all ${n.toLocaleString()}`));
    } else if (filters.workflow && filters.status !== "cancelled") {
      if (!bulkSteps.length && model.length) {
        try {
          bulkSteps = (await api("/_platform/api/runs/" + encodeURIComponent(model[0].runId))).steps.map((s) => s.name);
        } catch {
          bulkSteps = [];
        }
      }
      if (bulkSteps.length) {
        const select = el("select", { id: "bulk-step", "aria-label": "rerun from step" }, ...bulkSteps.map((name) => el("option", { value: name }, name)));
        parts.push(el("label", {}, "rerun from", select), el("button", { type: "button", id: "bulk-rerun", onclick: () => runBulk("rerun", select.value) }, `Rerun all ${n.toLocaleString()}`));
      }
    }
    bulkBox.replaceChildren(...parts);
    bulkBox.hidden = parts.length < 2;
  }

  async function runBulk(action, fromStep) {
    const n = overview.counts[filters.status] || 0;
    const ok = await Dash.confirmDialog({
      title: action === "cancel" ? `Cancel ${bulkNoun(n)}?` : `Rerun ${bulkNoun(n)} from ${fromStep}?`,
      ok: action === "cancel" ? `Cancel ${n.toLocaleString()} runs` : `Start ${n.toLocaleString()} reruns`,
      danger: action === "cancel",
      body: [
        el(
          "p",
          {},
          action === "cancel"
            ? "Each run stops where it is (its children too) and ends as cancelled."
            : `Each becomes a new run with the same input: the steps before ${fromStep} replay their recorded results; ${fromStep} and the steps after it run again.`,
        ),
        el("p", { class: "muted" }, "Runs that change status meanwhile are counted as they are when they are reached."),
      ],
    });
    if (!ok) return;
    let before = null;
    let done = 0;
    let skipped = 0;
    for (let round = 0; round < 100; round++) {
      let answer;
      try {
        answer = await api("/_platform/api/runs/bulk", {
          method: "POST",
          body: { action, status: filters.status, workflowId: filters.workflow || undefined, fromStep, before: before || undefined },
        });
      } catch (error) {
        Dash.notify(`Stopped after ${done} runs: ${error.message}`, true);
        break;
      }
      done += answer.done;
      skipped += answer.skipped;
      before = answer.next;
      if (!before) break;
    }
    Dash.notify(`${action === "cancel" ? "Cancelled" : "Reran"} ${done} run${done === 1 ? "" : "s"}${skipped ? `; ${skipped} skipped` : ""}`);
    bulkFor = "";
    scheduleRefresh();
  }

  function pageQuery(extra) {
    const search = searching() ? { q: filters.q, from: filters.from, to: filters.to } : {};
    return query({ workflowId: filters.workflow, status: filters.status, ...search, ...extra });
  }

  function listPath() {
    return searching() ? "/_platform/api/runs/search" : "/_platform/api/runs";
  }

  /** Refetch the loaded window (at least one page) and the counts, and merge. */
  async function refresh() {
    const limit = Math.min(Math.max(model.length, PAGE), WINDOW_MAX);
    const wanted = JSON.stringify(filters);
    const mine = ++asked;
    let page, overviewAnswer;
    try {
      [page, overviewAnswer] = await Promise.all([api(listPath() + pageQuery({ limit })), api("/_platform/api/overview" + query({ workflowId: filters.workflow }))]);
    } catch (error) {
      Dash.notify("Could not load runs: " + error.message, true);
      return;
    }
    if (wanted !== JSON.stringify(filters) || mine < applied) return; // stale by now
    applied = mine;
    if (searching()) scanned = page.scanned;
    const ids = new Set(page.runs.map((r) => r.runId));
    let tail = [];
    if (page.next && page.runs.length) {
      const last = model.findIndex((r) => r.runId === page.runs[page.runs.length - 1].runId);
      if (last >= 0) tail = model.slice(last + 1).filter((r) => !ids.has(r.runId));
    }
    if (loaded) {
      const known = new Set(model.map((r) => r.runId));
      for (const run of page.runs) if (!known.has(run.runId)) fresh.add(run.runId);
    }
    model = page.runs.concat(tail);
    if (!tail.length) next = page.next;
    loaded = true;
    Dash.syncClock(overviewAnswer.now);
    overview = overviewAnswer;
    statusOf.clear();
    renderOverview();
    render();
    renderBulk();
    searchOn();
  }

  /** A search that found less than a page keeps reading older runs, a few scans at most. */
  function searchOn() {
    if (searching() && next && model.length < PAGE && autoSearch < AUTO_SEARCH_MAX) {
      autoSearch += 1;
      loadOlder();
    }
  }

  const scheduleRefresh = Dash.throttle(refresh, 700);

  async function loadOlder() {
    if (!next || older.disabled) return;
    older.disabled = true;
    try {
      const page = await api(listPath() + pageQuery({ limit: PAGE, before: next }));
      if (searching()) scanned += page.scanned;
      const known = new Set(model.map((r) => r.runId));
      model = model.concat(page.runs.filter((r) => !known.has(r.runId))).slice(0, ROWS_MAX);
      next = model.length >= ROWS_MAX ? null : page.next;
      render();
      setTimeout(searchOn, 0);
    } catch (error) {
      Dash.notify("Could not load older runs: " + error.message, true);
      scheduleRefresh();
    } finally {
      older.disabled = false;
    }
  }

  function setFilter(name, value) {
    filters[name] = value;
    bulkSteps = [];
    statusSelect.value = filters.status;
    workflowSelect.value = filters.workflow;
    history.replaceState(null, "", Dash.href("/_platform/", { workflow: filters.workflow, status: filters.status, q: filters.q, from: filters.from, to: filters.to }));
    model = [];
    next = null;
    loaded = false;
    rowCache.clear();
    render();
    refresh();
  }

  /** Move the run from its last known status to `status` in the counts shown. */
  function countEvent(runId, workflowId, status, attempt, rowStatus) {
    if (!overview || (filters.workflow && workflowId !== filters.workflow)) return;
    const before = statusOf.get(runId) ?? rowStatus;
    if (before === undefined && status === "queued" && attempt === 1) {
      overview.counts.queued = (overview.counts.queued || 0) + 1;
      overview.total += 1;
    } else if (before !== undefined && before !== status && !TERMINAL.has(before)) {
      overview.counts[before] = Math.max(0, (overview.counts[before] || 0) - 1);
      overview.counts[status] = (overview.counts[status] || 0) + 1;
    }
    if (statusOf.size > 10000) statusOf.clear();
    statusOf.set(runId, status);
    renderOverview();
  }

  /** A workflow.run.<status> event: update the row now; the refetch that follows confirms. */
  function onEvent(event) {
    if (event.r !== "workflow" || typeof event.t !== "string" || !event.t.startsWith("workflow.run.")) return;
    const data = event.data && typeof event.data === "object" ? event.data : {};
    const runId = data.runId || event.k;
    const status = data.status || event.t.slice("workflow.run.".length);
    if (!runId || !STATUSES.includes(status)) return;
    const i = model.findIndex((r) => r.runId === runId);
    countEvent(runId, data.workflowId || event.ns, status, data.attempt ?? 1, i >= 0 ? model[i].status : undefined);
    if (i >= 0) {
      const run = model[i];
      if (!TERMINAL.has(run.status)) {
        model[i] = {
          ...run,
          status,
          attempt: data.attempt ?? run.attempt,
          updatedAt: event.ts,
          completedAt: TERMINAL.has(status) ? event.ts : run.completedAt,
          error: data.error ?? run.error,
        };
      }
    } else if (loaded && !searching() && status === "queued" && (data.attempt ?? 1) === 1) {
      const run = {
        runId,
        workflowId: data.workflowId || event.ns,
        status,
        attempt: 1,
        createdAt: event.ts,
        updatedAt: event.ts,
        completedAt: null,
        parentRunId: data.parentRunId ?? null,
        error: null,
      };
      if (matches(run)) {
        model.unshift(run);
        fresh.add(runId);
        if (model.length > ROWS_MAX) model.length = ROWS_MAX;
      }
    }
    scheduleRender();
    if (!searching()) scheduleRefresh(); // a search is rerun on request, not on every event
  }

  workflowSelect.addEventListener("change", () => setFilter("workflow", workflowSelect.value));
  statusSelect.addEventListener("change", () => setFilter("status", statusSelect.value));
  older.addEventListener("click", () => {
    autoSearch = 0;
    loadOlder();
  });
  document.getElementById("search").addEventListener("submit", (submit) => {
    submit.preventDefault();
    filters.q = qInput.value.trim();
    filters.from = fromLocalInput(fromInput.value);
    filters.to = fromLocalInput(toInput.value);
    autoSearch = 0;
    setFilter("q", filters.q);
  });
  clearSearch.addEventListener("click", () => {
    qInput.value = fromInput.value = toInput.value = "";
    filters.from = filters.to = "";
    setFilter("q", "");
  });

  setInterval(() => {
    for (const td of rows.querySelectorAll("td.elapsed")) td.textContent = fmtDuration(Dash.now() - Number(td.dataset.since));
  }, 1000);

  render();
  refresh();
  // Connected: refetch once more, so a run started between the first fetch and the
  // connection is not missed; from then on the stream tells us.
  Dash.live({ r: "workflow" }, { onEvent, onOpen: () => searching() || scheduleRefresh() });
})();
