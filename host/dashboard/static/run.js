/* /_platform/runs/{runId}: a run's input, output, error and step timeline, and its actions:
 * cancel, send the event a wait is parked on, rerun from a step. Refetched when the stream
 * reports a status change of the run or of a child, and every 2 s while it is running. */
"use strict";

(() => {
  const { el, api, badge, runLink, timeAgo, fmtFull, fmtDuration, jsonBlock, textBlock, oneLine, TERMINAL } = Dash;

  const runId = decodeURIComponent(location.pathname.split("/").pop());
  const $ = (id) => document.getElementById(id);

  let current = null; // the last answer of /_platform/api/runs/{id}
  let asked = 0; // loads started; an answer older than the last one shown is dropped
  let shown = 0;
  let signalFor = ""; // the wait the signal form was last prefilled for
  const openOutputs = new Set(); // steps whose output the user unfolded
  const now = Dash.now;

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
    Dash.syncClock(detail.now);
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
    renderFailures(detail.failures || []);
    renderSignal(run, detail.steps);
    setJson($("input"), run.input, run.inputTruncated);
    if (run.status === "completed") setJson($("output"), run.output, run.outputTruncated);
    else setNote($("output"), TERMINAL.has(run.status) ? "no output: the run did not complete" : "not finished yet");
    renderTimeline(detail);
  }

  /** Show a JSON value, unless it is already shown: a refresh keeps what the user folded. */
  function setJson(box, value, truncated) {
    const key = JSON.stringify([value, truncated ?? null]);
    if (box.dataset.shown === key) return;
    box.dataset.shown = key;
    box.replaceChildren(jsonBlock(value, truncated));
  }

  function setNote(box, text) {
    if (box.dataset.shown === "note:" + text) return;
    box.dataset.shown = "note:" + text;
    box.replaceChildren(el("p", { class: "note" }, text));
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
      ["Created", timeAgo(run.createdAt)],
      ["Updated", timeAgo(run.updatedAt)],
      ["Ended", end === null ? "–" : timeAgo(end)],
      ["Duration", end === null ? el("span", { dataset: { since: String(run.createdAt) } }, fmtDuration(now() - run.createdAt)) : fmtDuration(end - run.createdAt)],
    ];
    items.push(["Steps", String(detail.stepCount)]);
    const started = startedBy(detail.origin);
    if (started) items.push(["Started by", started]);
    if (run.parentRunId) items.push(["Parent run", runLink(run.parentRunId)]);
    if (detail.rerunOf) {
      items.push(["Rerun of", el("span", {}, runLink(detail.rerunOf.runId), " from ", el("code", {}, detail.rerunOf.fromStep))]);
    }
    $("meta").replaceChildren(...items.map(([label, value]) => el("div", {}, el("dt", {}, label), el("dd", {}, value))));
  }

  /** What started the run: an event (linked to it on the events page) or a cron tick; a parent
   * and a rerun have their own rows. */
  function startedBy(origin) {
    if (!origin) return null;
    if (origin.kind === "event") {
      const type = origin.event ? origin.event.type : null;
      const href = Dash.href("/_platform/events", { t: type }) + "#event-" + origin.eventId;
      return el("span", {}, el("a", { class: "origin-event", href }, `event #${origin.eventId}`), type ? el("span", { class: "muted" }, " ", type) : null);
    }
    if (origin.kind === "cron") return el("span", { class: "origin-cron" }, "cron tick ", timeAgo(origin.tick));
    if (origin.kind === "direct") return el("span", { class: "muted" }, "API, CLI or code");
    return null;
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
    const cancelled = run.status === "cancelled";
    const heading = cancelled ? "Cancelled" : retrying ? `Attempt ${run.attempt - 1} failed; retrying` : "Failed";
    // A cancel is someone's decision, not a fault: shown plainly, not in red.
    box.classList.toggle("error", !cancelled);
    box.classList.toggle("cancelled", cancelled);
    box.replaceChildren(
      el("h3", {}, heading, error.step ? el("span", {}, " at step ", el("code", { class: "error-step" }, error.step)) : null),
      cancelled ? el("p", { class: "cancel-note" }, error.message || "cancelled") : textBlock(`${error.type || "Error"}: ${error.message ?? ""}`, "error"),
    );
  }

  const openTraces = new Set(); // attempts whose traceback the user unfolded (or folded: "-n")

  /** Each failed attempt: when, where, what, and its traceback (the user's frames). */
  function renderFailures(failures) {
    $("attempts").hidden = failures.length === 0;
    $("attempt-count").textContent = failures.length ? `(${failures.length})` : "";
    const last = failures.length ? failures[failures.length - 1].attempt : 0;
    $("attempt-list").replaceChildren(
      ...failures
        .slice()
        .reverse()
        .map((f) => {
          const key = String(f.attempt);
          const open = openTraces.has(key) || (f.attempt === last && !openTraces.has("-" + key));
          const details = el("details", { class: "trace", open }, el("summary", {}, "traceback"), textBlock(f.trace || "(no traceback recorded)", "trace"));
          details.addEventListener("toggle", () => {
            openTraces.delete(details.open ? "-" + key : key);
            openTraces.add(details.open ? key : "-" + key);
          });
          return el(
            "li",
            { class: "attempt", dataset: { attempt: key } },
            el("div", { class: "title" }, el("strong", {}, `Attempt ${f.attempt}`), " ", timeAgo(f.at), f.step ? el("span", {}, " · at step ", el("code", {}, f.step)) : el("span", { class: "muted" }, " · outside any step")),
            el("div", { class: "what" }, `${f.type || "Error"}: ${f.message ?? ""}`),
            details,
          );
        }),
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
      wait.timeoutAt ? el("span", {}, "; times out ", timeAgo(wait.timeoutAt)) : null,
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
    if (step.status === "abandoned") return "abandoned";
    return { sleep: "sleeping", wait_event: "waiting_event" }[step.kind] || "running";
  }

  function renderTimeline(detail) {
    const { run, steps, children } = detail;
    const start = run.createdAt;
    const ended = run.completedAt ?? (TERMINAL.has(run.status) ? run.updatedAt : null);
    let end = ended ?? now();
    // Replayed steps carry the original run's times: they are not part of this run's span.
    for (const step of steps) if (!step.replayed) end = Math.max(end, step.completedAt ?? step.startedAt);
    const span = Math.max(end - start, 1);
    $("step-count").textContent = detail.stepCount > steps.length ? `(first ${steps.length} of ${detail.stepCount})` : `(${steps.length})`;
    $("no-steps").hidden = steps.length > 0;
    $("timeline").replaceChildren(...steps.map((step, i) => stepItem(step, i, { start, span, end, children: children || {}, open: ended === null })));
  }

  /** When a step ran, as an offset from the run's start ("+1.20 s · took 3 ms"), the full time on hover. */
  function timingOf(step, ctx) {
    if (step.replayed) {
      return el("span", { class: "timing", title: `recorded by the original run at ${fmtFull(step.startedAt)}` }, "replayed · not run again");
    }
    const offset = "+" + fmtDuration(step.startedAt - ctx.start);
    const tail = step.completedAt !== null && step.completedAt !== undefined ? "took " + fmtDuration(step.completedAt - step.startedAt) : step.status;
    return el("span", { class: "timing", title: "started " + fmtFull(step.startedAt) + (step.completedAt ? "\nended " + fmtFull(step.completedAt) : "") }, `${offset} · ${tail}`);
  }

  function barOf(step, ctx) {
    const pending = step.status === "pending";
    const stepEnd = step.completedAt ?? (pending ? ctx.end : step.startedAt);
    const bar = el("div", { class: "bar", title: step.replayed ? "replayed from the original run: took no time in this one" : `${fmtDuration(stepEnd - step.startedAt)} of the run's ${fmtDuration(ctx.span)}` });
    if (step.replayed) {
      bar.classList.add("replayed");
      return bar;
    }
    // Clamped: a step can never be drawn outside the run's box.
    const clamp = (x) => Math.min(100, Math.max(0, x));
    const left = clamp((100 * (step.startedAt - ctx.start)) / ctx.span);
    const width = Math.min(100 - left, Math.max(clamp((100 * (stepEnd - step.startedAt)) / ctx.span), 0.3));
    const fill = el("span", { class: pending ? "open" : null });
    fill.style.left = `min(${left.toFixed(2)}%, calc(100% - 3px))`; // 3px: its min-width
    fill.style.width = width.toFixed(2) + "%";
    bar.append(fill);
    return bar;
  }

  function stepItem(step, index, ctx) {
    const color = stepColor(step);
    const card = el(
      "div",
      { class: "card" },
      el(
        "div",
        { class: "title" },
        el("span", { class: "name" }, step.name),
        el("span", { class: "kind" }, step.kind),
        badge(step.status),
        step.replayed ? el("span", { class: "badge plain replayed", title: "its recorded result was reused; the step did not run again" }, "replayed") : null,
        step.attempt > 1 ? el("span", { class: "muted" }, `attempt ${step.attempt}`) : null,
        timingOf(step, ctx),
        el("button", { type: "button", class: "small rerun-from", title: "a new run that replays the steps before this one and runs this one and the rest again", onclick: () => rerun(step.name) }, "Rerun from here"),
      ),
      kindDetail(step, ctx),
      barOf(step, ctx),
      outputOf(step),
      step.error ? textBlock(`${step.error.type || "Error"}: ${step.error.message ?? ""}`, "error") : null,
    );
    return el("li", { class: "step s-" + color, id: "step-" + (index + 1), dataset: { step: step.name, kind: step.kind, status: step.status, replayed: step.replayed ? "true" : null } }, el("div", { class: "dot" }, String(index + 1)), card);
  }

  function kindDetail(step, ctx) {
    if (step.kind === "sleep" && step.wakeAt) {
      const verb = step.status === "pending" ? "wakes " : step.status === "abandoned" ? "would have woken " : "woke ";
      return el("div", { class: "detail" }, verb, el("code", { class: "wake" }, timeAgo(step.wakeAt)));
    }
    if (step.kind === "wait_event") {
      return el(
        "div",
        { class: "detail" },
        "awaits ",
        el("code", { class: "awaits" }, step.eventType ?? "?"),
        step.match ? el("span", {}, " matching ", el("code", { class: "match" }, JSON.stringify(step.match))) : null,
        step.timeoutAt && step.status === "pending" ? el("span", {}, " · ", timeAgo(step.timeoutAt, "times out ")) : null,
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

  /** Which steps a rerun from `stepName` replays and which run again (as the engine decides:
   * the steps completed before it replay; it and everything after run again). */
  function rerunPlan(stepName) {
    const steps = current ? current.steps : [];
    const at = steps.findIndex((s) => s.name === stepName);
    const before = at < 0 ? [] : steps.slice(0, at);
    return {
      replayed: before.filter((s) => s.status === "completed").map((s) => s.name),
      again: steps.filter((s, i) => i >= at || s.status !== "completed").map((s) => s.name),
    };
  }

  const codeList = (names) => el("ul", {}, ...names.map((n) => el("li", {}, el("code", {}, n))));

  async function rerun(stepName) {
    const plan = rerunPlan(stepName);
    const workflow = current ? current.run.workflowId : "";
    const ok = await Dash.confirmDialog({
      title: `Rerun ${workflow} from ${stepName}?`,
      ok: "Rerun",
      body: [
        el("p", {}, "A new run with the same input. These steps run again:"),
        el("div", { class: "again" }, codeList(plan.again)),
        el("p", { class: "muted" }, "(and any step the code reaches after them)"),
        plan.replayed.length ? el("p", {}, "These replay their recorded results without running:") : el("p", {}, "No step is replayed."),
        plan.replayed.length ? el("div", { class: "replayed" }, codeList(plan.replayed)) : null,
      ],
    });
    if (!ok) return;
    try {
      const answer = await api(`/api/workflows/runs/${encodeURIComponent(runId)}/rerun`, { method: "POST", body: { fromStep: stepName } });
      Dash.notify(`Started run ${answer.runId}`);
      location.href = Dash.runHref(answer.runId);
    } catch (error) {
      Dash.notify("Rerun failed: " + error.message, true);
    }
  }

  /** A new run of the workflow with an input the user edits; nothing is replayed. */
  async function rerunWithInput() {
    if (!current) return;
    const { run, steps } = current;
    const area = el("textarea", { id: "rerun-input-json", spellcheck: "false", "aria-label": "input (JSON)" });
    area.value = run.inputTruncated ? "" : JSON.stringify(run.input, null, 2);
    let input;
    const ok = await Dash.confirmDialog({
      title: `Rerun ${run.workflowId} with edited input?`,
      ok: "Start run",
      body: [
        el("label", { class: "muted", for: "rerun-input-json" }, "Input (JSON)"),
        area,
        el("p", {}, "A new run from the start: with a new input nothing is replayed, so every step runs again:"),
        el("div", { class: "again" }, codeList(steps.map((s) => s.name))),
      ],
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
      const answer = await api(`/api/workflows/${encodeURIComponent(run.workflowId)}/start`, { method: "POST", body: input });
      Dash.notify(`Started run ${answer.runId}`);
      location.href = Dash.runHref(answer.runId);
    } catch (error) {
      Dash.notify("Starting the run failed: " + error.message, true);
    }
  }

  $("rerun").addEventListener("click", () => {
    const step = $("rerun-step").value;
    if (step) rerun(step);
  });
  $("rerun-input").addEventListener("click", rerunWithInput);

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
    for (const node of document.querySelectorAll("#meta [data-since]")) node.textContent = fmtDuration(now() - Number(node.dataset.since));
  }, 1000);
  setInterval(() => {
    if (current && ["queued", "running"].includes(current.run.status)) scheduleLoad();
  }, 2000);

  $("copy-id").replaceChildren(JsonView.copyButton(() => runId, "copy the run id"));
  load();
  Dash.live({ r: "workflow" }, { onEvent: (event) => concerns(event) && scheduleLoad(), onOpen: scheduleLoad });
})();
