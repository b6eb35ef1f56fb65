/* /_platform/runs/{runId}: a run's input, output, error and step timeline, and its actions:
 * cancel, send the event a wait is parked on, rerun from a step. Refetched when the stream
 * reports a status change of the run or of a child, and every 2 s while it is running. */
"use strict";

(() => {
  const { el, api, badge, runLink, fmtTime, fmtFull, fmtDuration, fmtRelative, jsonBlock, textBlock, oneLine, TERMINAL } = Dash;

  const runId = decodeURIComponent(location.pathname.split("/").pop());
  const $ = (id) => document.getElementById(id);

  let current = null; // the last answer of /_platform/api/runs/{id}
  let asked = 0; // loads started; an answer older than the last one shown is dropped
  let shown = 0;
  let skew = 0;
  let signalFor = ""; // the wait the signal form was last prefilled for
  const openOutputs = new Set(); // steps whose output the user unfolded
  const now = () => Date.now() + skew;

  // ---------------------------------------------------------------------------- loading

  async function load() {
    const mine = ++asked;
    let detail;
    try {
      detail = await api("/_platform/api/runs/" + encodeURIComponent(runId));
    } catch (error) {
      if (error.status === 404) {
        $("run").hidden = true;
        const missing = $("missing");
        missing.hidden = false;
        missing.textContent = `No run ${runId} here: it never existed, or retention pruned it.`;
      } else {
        Dash.notify("Could not load the run: " + error.message, true);
      }
      return;
    }
    if (mine < shown) return;
    shown = mine;
    current = detail;
    skew = detail.now - Date.now();
    render(detail);
  }

  const scheduleLoad = Dash.throttle(load, 300);

  // -------------------------------------------------------------------------- rendering

  function render(detail) {
    const run = detail.run;
    document.title = `${run.workflowId} · ${run.runId} · platform-shim`;
    $("run").hidden = false;
    $("workflow").textContent = run.workflowId;
    $("status").replaceChildren(badge(run.status));
    $("run-id").textContent = run.runId;
    $("cancel").hidden = TERMINAL.has(run.status);

    renderRerunChoices(detail.steps);
    renderMeta(detail);
    renderError(run);
    renderSignal(run, detail.steps);
    $("input").replaceChildren(jsonBlock(run.input, run.inputTruncated));
    $("output").replaceChildren(
      run.status === "completed" ? jsonBlock(run.output, run.outputTruncated) : el("p", { class: "note" }, TERMINAL.has(run.status) ? "no output: the run did not complete" : "not finished yet"),
    );
    renderTimeline(detail);
  }

  function renderRerunChoices(steps) {
    const select = $("rerun-step");
    const chosen = select.value;
    const names = steps.map((s) => s.name);
    if (select.dataset.names !== JSON.stringify(names)) {
      select.dataset.names = JSON.stringify(names);
      select.replaceChildren(...names.map((name) => el("option", { value: name }, name)));
      if (names.includes(chosen)) select.value = chosen;
    }
    $("rerun").disabled = names.length === 0;
    select.disabled = names.length === 0;
  }

  function renderMeta(detail) {
    const run = detail.run;
    const end = run.completedAt ?? (TERMINAL.has(run.status) ? run.updatedAt : null);
    const items = [
      ["Attempt", String(run.attempt)],
      ["Created", el("span", { title: fmtFull(run.createdAt) }, fmtTime(run.createdAt, true))],
      ["Updated", el("span", { title: fmtFull(run.updatedAt) }, fmtTime(run.updatedAt, true))],
      ["Ended", end === null ? "–" : el("span", { title: fmtFull(end) }, fmtTime(end, true))],
      ["Duration", end === null ? el("span", { dataset: { since: String(run.createdAt) } }, fmtDuration(now() - run.createdAt)) : fmtDuration(end - run.createdAt)],
    ];
    items.push(["Steps", String(detail.stepCount)]);
    if (run.parentRunId) items.push(["Parent run", runLink(run.parentRunId)]);
    if (detail.rerunOf) {
      items.push(["Rerun of", el("span", {}, runLink(detail.rerunOf.runId), " from ", el("code", {}, detail.rerunOf.fromStep))]);
    }
    $("meta").replaceChildren(...items.map(([label, value]) => el("div", {}, el("dt", {}, label), el("dd", {}, value))));
  }

  function renderError(run) {
    const box = $("error");
    const error = run.error;
    if (!error || run.status === "completed") {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    const retrying = !TERMINAL.has(run.status);
    const heading = run.status === "cancelled" ? "Cancelled" : retrying ? `Attempt ${run.attempt - 1} failed; retrying` : "Failed";
    box.classList.toggle("error", run.status !== "cancelled");
    box.replaceChildren(
      el("h3", {}, heading, error.step ? el("span", {}, " at step ", el("code", { class: "error-step" }, error.step)) : null),
      textBlock(`${error.type || "Error"}: ${error.message ?? ""}`, "error"),
    );
  }

  function pendingWait(steps) {
    for (let i = steps.length - 1; i >= 0; i--) {
      const step = steps[i];
      if (step.kind === "wait_event" && step.status === "pending") return step;
    }
    return null;
  }

  function renderSignal(run, steps) {
    const form = $("signal");
    const wait = run.status === "waiting_event" ? pendingWait(steps) : null;
    if (!wait) {
      form.hidden = true;
      signalFor = "";
      return;
    }
    form.hidden = false;
    $("signal-about").replaceChildren(
      "Step ",
      el("code", {}, wait.name),
      " waits for ",
      el("code", {}, wait.eventType),
      wait.match ? el("span", {}, " matching ", el("code", {}, JSON.stringify(wait.match))) : null,
      wait.timeoutAt ? el("span", { dataset: { rel: String(wait.timeoutAt), prefix: "; times out " } }, "; times out " + fmtRelative(wait.timeoutAt, now())) : null,
      ".",
    );
    const key = wait.name + "\n" + run.attempt;
    if (signalFor !== key) {
      // Prefill once per wait, so a refresh does not undo the user's edits.
      signalFor = key;
      $("signal-type").value = wait.eventType;
      $("signal-payload").value = JSON.stringify(wait.match || {}, null, 2);
      $("signal-result").textContent = "";
    }
  }

  function stepColor(step) {
    if (step.status === "completed") return "completed";
    if (step.status === "failed") return "failed";
    return { sleep: "sleeping", wait_event: "waiting_event" }[step.kind] || "running";
  }

  function renderTimeline(detail) {
    const { run, steps, children } = detail;
    const start = run.createdAt;
    const ended = run.completedAt ?? (TERMINAL.has(run.status) ? run.updatedAt : null);
    let end = ended ?? now();
    for (const step of steps) end = Math.max(end, step.completedAt ?? step.startedAt);
    const span = Math.max(end - start, 1);
    $("step-count").textContent = detail.stepCount > steps.length ? `(first ${steps.length} of ${detail.stepCount})` : `(${steps.length})`;
    $("no-steps").hidden = steps.length > 0;
    $("timeline").replaceChildren(...steps.map((step, i) => stepItem(step, i, { start, span, end, children: children || {}, open: ended === null })));
  }

  function stepItem(step, index, ctx) {
    const color = stepColor(step);
    const stepEnd = step.completedAt ?? (step.status === "pending" ? ctx.end : step.startedAt);
    const timing =
      step.completedAt !== null && step.completedAt !== undefined
        ? `${fmtTime(step.startedAt, true)} · took ${fmtDuration(step.completedAt - step.startedAt)}`
        : `${fmtTime(step.startedAt, true)} · ${step.status === "pending" ? "pending" : "ended"}`;

    const bar = el("div", { class: "bar", title: `${fmtDuration(stepEnd - step.startedAt)} of the run's ${fmtDuration(ctx.span)}` });
    const fill = el("span", { class: step.status === "pending" ? "open" : null });
    fill.style.left = ((100 * (step.startedAt - ctx.start)) / ctx.span).toFixed(2) + "%";
    fill.style.width = Math.max((100 * (stepEnd - step.startedAt)) / ctx.span, 0.3).toFixed(2) + "%";
    bar.append(fill);

    const card = el(
      "div",
      { class: "card" },
      el(
        "div",
        { class: "title" },
        el("span", { class: "name" }, step.name),
        el("span", { class: "kind" }, step.kind),
        badge(step.status),
        step.attempt > 1 ? el("span", { class: "muted" }, `attempt ${step.attempt}`) : null,
        el("span", { class: "timing", title: fmtFull(step.startedAt) }, timing),
        el("button", { type: "button", class: "small rerun-from", title: "a new run that replays the steps before this one and runs this one and the rest again", onclick: () => rerun(step.name) }, "Rerun from here"),
      ),
      kindDetail(step, ctx),
      bar,
      outputOf(step),
      step.error ? textBlock(`${step.error.type || "Error"}: ${step.error.message ?? ""}`, "error") : null,
    );
    return el("li", { class: "step s-" + color, id: "step-" + (index + 1), dataset: { step: step.name, kind: step.kind, status: step.status } }, el("div", { class: "dot" }, String(index + 1)), card);
  }

  function relSpan(ms, prefix) {
    return el("span", { title: fmtFull(ms), dataset: { rel: String(ms), prefix } }, prefix + fmtRelative(ms, now()));
  }

  function kindDetail(step, ctx) {
    if (step.kind === "sleep" && step.wakeAt) {
      return el("div", { class: "detail" }, step.status === "pending" ? "wakes at " : "woke at ", el("code", { class: "wake" }, fmtTime(step.wakeAt, true)), " ", step.status === "pending" ? relSpan(step.wakeAt, "(") : null, step.status === "pending" ? ")" : null);
    }
    if (step.kind === "wait_event") {
      return el(
        "div",
        { class: "detail" },
        "awaits ",
        el("code", { class: "awaits" }, step.eventType ?? "?"),
        step.match ? el("span", {}, " matching ", el("code", { class: "match" }, JSON.stringify(step.match))) : null,
        step.timeoutAt && step.status === "pending" ? el("span", {}, " · ", relSpan(step.timeoutAt, "times out ")) : null,
        step.status === "completed" && step.output === null ? el("span", {}, " · timed out without an event") : null,
      );
    }
    if (step.kind === "invoke" && step.childRunId) {
      const child = ctx.children[step.childRunId];
      return el("div", { class: "detail" }, "child run ", el("a", { class: "mono child-link", href: Dash.runHref(step.childRunId) }, step.childRunId), child ? el("span", {}, " ", badge(child.status), " ", child.workflowId) : null);
    }
    return null;
  }

  function outputOf(step) {
    if (step.status !== "completed" || step.output === undefined || (step.output === null && step.kind !== "run")) return null;
    const line = oneLine(step.output, 1000);
    if (!step.outputTruncated && line.length <= 90) return el("div", { class: "inline-out", title: "output" }, "→ ", line);
    const details = el("details", { open: openOutputs.has(step.name) }, el("summary", {}, "output"), jsonBlock(step.output, step.outputTruncated));
    details.addEventListener("toggle", () => (details.open ? openOutputs.add(step.name) : openOutputs.delete(step.name)));
    return details;
  }

  // ---------------------------------------------------------------------------- actions

  async function rerun(stepName) {
    try {
      const answer = await api(`/api/workflows/runs/${encodeURIComponent(runId)}/rerun`, { method: "POST", body: { fromStep: stepName } });
      Dash.notify(`Started run ${answer.runId}`);
      location.href = Dash.runHref(answer.runId);
    } catch (error) {
      Dash.notify("Rerun failed: " + error.message, true);
    }
  }

  $("rerun").addEventListener("click", () => {
    const step = $("rerun-step").value;
    if (step) rerun(step);
  });

  $("cancel").addEventListener("click", async () => {
    if (!confirm(`Cancel run ${runId}?`)) return;
    try {
      const answer = await api(`/api/workflows/runs/${encodeURIComponent(runId)}/cancel`, { method: "POST" });
      Dash.notify(answer.cancelled ? "Run cancelled" : "The run had already ended");
    } catch (error) {
      Dash.notify("Cancel failed: " + error.message, true);
    }
    load();
  });

  $("signal").addEventListener("submit", async (event) => {
    event.preventDefault();
    const type = $("signal-type").value.trim();
    let payload;
    try {
      const text = $("signal-payload").value.trim();
      payload = text ? JSON.parse(text) : null;
    } catch (error) {
      Dash.notify("The payload is not valid JSON: " + error.message, true);
      return;
    }
    $("signal-send").disabled = true;
    try {
      const answer = await api("/api/workflows/signal", { method: "POST", body: { eventType: type, payload } });
      $("signal-result").textContent = `sent; resumed ${answer.count} run${answer.count === 1 ? "" : "s"}`;
      Dash.notify(`Event ${type} sent; ${answer.count} run${answer.count === 1 ? "" : "s"} resumed`);
    } catch (error) {
      Dash.notify("Sending failed: " + error.message, true);
    } finally {
      $("signal-send").disabled = false;
    }
    scheduleLoad();
  });

  // ------------------------------------------------------------------------------- live

  function concerns(event) {
    if (!current || event.r !== "workflow") return false;
    const data = event.data && typeof event.data === "object" ? event.data : {};
    const id = data.runId || event.k;
    if (id === runId || data.parentRunId === runId) return true;
    return current.steps.some((s) => s.childRunId === id);
  }

  setInterval(() => {
    for (const node of document.querySelectorAll("[data-rel]")) node.textContent = node.dataset.prefix + fmtRelative(Number(node.dataset.rel), now());
    for (const node of document.querySelectorAll("#meta [data-since]")) node.textContent = fmtDuration(now() - Number(node.dataset.since));
  }, 1000);
  setInterval(() => {
    if (current && ["queued", "running"].includes(current.run.status)) scheduleLoad();
  }, 2000);

  load();
  Dash.live({ r: "workflow" }, { onEvent: (event) => concerns(event) && scheduleLoad(), onOpen: scheduleLoad });
})();
