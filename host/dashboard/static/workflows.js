/* /_platform/workflows: each loaded workflow with its trigger, next cron tick, runs counted by
 * status (each count links to those runs) and options. Refetched when a run changes status. */
"use strict";

(() => {
  const { el, api, badge, timeAgo, STATUSES } = Dash;
  const rows = document.getElementById("rows");
  const summary = document.getElementById("summary");
  const empty = document.getElementById("empty");

  function triggerCell(workflow) {
    const t = workflow.trigger;
    if (!t) return el("td", { class: "muted" }, "started by API, CLI, code or a parent");
    if (t.kind === "schedule") return el("td", {}, "cron ", el("code", { class: "cron" }, t.cron));
    const where = [t.r ? `source ${t.r}` : null, t.ns ? `namespace ${t.ns}` : null].filter(Boolean).join(", ");
    return el("td", {}, "event ", el("a", { class: "mono", href: Dash.href("/_platform/events", { t: t.t }) }, t.t), where ? el("span", { class: "muted" }, ` (${where})`) : null);
  }

  function countsCell(workflow) {
    const links = STATUSES.filter((s) => workflow.counts[s]).map((s) =>
      el("a", { class: "count-link", href: Dash.href("/_platform/", { workflow: workflow.id, status: s }), title: `${workflow.counts[s]} ${s.replace("_", " ")} runs` }, badge(s), " ", workflow.counts[s].toLocaleString()),
    );
    return el(
      "td",
      {},
      el(
        "div",
        { class: "counts-cell" },
        el("a", { class: "total", href: Dash.href("/_platform/", { workflow: workflow.id }) }, `${workflow.total.toLocaleString()} run${workflow.total === 1 ? "" : "s"}`),
        ...links,
      ),
    );
  }

  function rowOf(workflow) {
    const options = [`retries ${workflow.options.retries}`];
    if (workflow.options.timeoutSecs !== undefined) options.push(`timeout ${workflow.options.timeoutSecs} s`);
    return el(
      "tr",
      { dataset: { workflow: workflow.id } },
      el("td", { class: "mono wf-id" }, el("a", { href: Dash.href("/_platform/", { workflow: workflow.id }) }, workflow.id)),
      triggerCell(workflow),
      el("td", { class: "time" }, workflow.nextAt ? timeAgo(workflow.nextAt) : "–", workflow.lastAt ? el("div", { class: "muted small" }, "last ", timeAgo(workflow.lastAt)) : null),
      countsCell(workflow),
      el("td", { class: "muted" }, options.join(", ")),
      el("td", {}, el("button", { type: "button", class: "small start", onclick: () => startRun(workflow.id) }, "Start…")),
    );
  }

  /** Start a run of `workflowId` with an input the user writes. */
  async function startRun(workflowId) {
    const area = el("textarea", { id: "start-input", spellcheck: "false", "aria-label": "input (JSON)" });
    area.value = "{}";
    let input;
    const ok = await Dash.confirmDialog({
      title: `Start a run of ${workflowId}`,
      ok: "Start run",
      body: [el("label", { class: "muted", for: "start-input" }, "Input (JSON; empty for null)"), area],
      check() {
        try {
          input = area.value.trim() ? JSON.parse(area.value) : null;
          return null;
        } catch (error) {
          return "The input is not valid JSON: " + error.message;
        }
      },
    });
    if (!ok) return;
    try {
      const answer = await api(`/api/workflows/${encodeURIComponent(workflowId)}/start`, { method: "POST", body: input });
      location.href = Dash.runHref(answer.runId);
    } catch (error) {
      Dash.notify("Starting the run failed: " + error.message, true);
    }
  }

  async function load() {
    let answer;
    try {
      answer = await api("/_platform/api/workflows");
    } catch (error) {
      Dash.notify("Could not load workflows: " + error.message, true);
      return;
    }
    Dash.syncClock(answer.now);
    rows.replaceChildren(...answer.workflows.map(rowOf));
    empty.hidden = answer.workflows.length > 0;
    const n = answer.workflows.length;
    summary.textContent = `${n} workflow${n === 1 ? "" : "s"} loaded`;
  }

  const scheduleLoad = Dash.throttle(load, 1000);
  load();
  Dash.live({ r: "workflow" }, { onEvent: scheduleLoad });
})();
