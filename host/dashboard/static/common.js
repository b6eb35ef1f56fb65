/* What every dashboard page shares: the token, API calls, the live stream, DOM and formatting
 * helpers. Data is only ever put on the page with textContent (via el()), never as HTML. */
"use strict";

const Dash = (() => {
  const STATUSES = ["queued", "running", "sleeping", "waiting_event", "completed", "failed", "cancelled"];
  const TERMINAL = new Set(["completed", "failed", "cancelled"]);

  // The ?token= the page was opened with, parsed as the host parses it (a form-encoded query:
  // "+" is a space, the first value counts), and encoded again for the links it carries on to.
  const tokenValue = new URLSearchParams(location.search).get("token");
  const tokenPart = tokenValue === null ? "" : "token=" + encodeURIComponent(tokenValue);

  function withToken(url) {
    if (!tokenPart) return url;
    return url + (url.includes("?") ? "&" : "?") + tokenPart;
  }

  function authHeaders() {
    return tokenPart ? { Authorization: "Bearer " + tokenValue } : {};
  }

  /** A dashboard URL (path + query object) carrying the token. */
  function href(path, query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query || {})) if (v !== undefined && v !== null && v !== "") q.set(k, v);
    const s = q.toString();
    return withToken(path + (s ? "?" + s : ""));
  }

  function runHref(runId) {
    return href("/_platform/runs/" + encodeURIComponent(runId));
  }

  /** fetch + JSON; a non-2xx answer throws an Error with the API's "detail". */
  async function api(path, options = {}) {
    const headers = authHeaders();
    let body;
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(options.body);
    }
    const res = await fetch(path, { method: options.method || "GET", headers, body, cache: "no-store" });
    const text = await res.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = text;
      }
    }
    if (!res.ok) {
      const detail = data && typeof data === "object" && "detail" in data ? data.detail : text;
      const error = new Error(`${res.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
      error.status = res.status;
      throw error;
    }
    return data;
  }

  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
    const s = q.toString();
    return s ? "?" + s : "";
  }

  // ------------------------------------------------------------------------------ DOM

  /** createElement with props; children are nodes or strings (always text, never markup). */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "style") node.style.cssText = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function badge(status) {
    return el("span", { class: "badge s-" + status, dataset: { status } }, String(status).replace("_", " "));
  }

  function runLink(runId, text) {
    return el("a", { class: "mono", href: runHref(runId) }, text || runId);
  }

  function jsonText(value) {
    return value === undefined ? "" : JSON.stringify(value, null, 2);
  }

  /** A JSON value in the collapsible viewer (jsonview.js); a value the host cut short shows as
   * its preview text with its size. */
  function jsonBlock(value, truncatedSize) {
    if (!truncatedSize) return JsonView.render(value === undefined ? null : value);
    const pre = el("pre", { class: "json" }, String(value) + " …");
    return el("div", {}, pre, el("p", { class: "note" }, `preview: the value is ${fmtBytes(truncatedSize)} of JSON`));
  }

  /** A <pre> of plain text (an error message, a stored object). */
  function textBlock(text, extraClass) {
    return el("pre", { class: "json" + (extraClass ? " " + extraClass : "") }, text);
  }

  /**
   * A modal confirmation: `title`, body nodes, and the label of the button that goes ahead.
   * Resolves true when the user confirms (and `check`, if given, returns no error message).
   */
  function confirmDialog({ title, body, ok, danger, check }) {
    return new Promise((resolve) => {
      const problem = el("p", { class: "dialog-problem", role: "alert", hidden: true });
      const yes = el("button", { type: "submit", value: "ok", class: danger ? "danger" : "primary", id: "confirm-ok" }, ok);
      const no = el("button", { type: "button", id: "confirm-cancel" }, "Back");
      const form = el("form", { method: "dialog" }, el("h3", { id: "confirm-title" }, title), el("div", { class: "dialog-body" }, body), problem, el("div", { class: "dialog-actions" }, no, yes));
      const dialog = el("dialog", { id: "confirm", class: "confirm", "aria-labelledby": "confirm-title" }, form);
      let answered = false;
      const finish = (value) => {
        if (answered) return;
        answered = true;
        dialog.close();
        dialog.remove();
        resolve(value);
      };
      form.addEventListener("submit", (submit) => {
        submit.preventDefault();
        const error = check ? check() : null;
        if (error) {
          problem.textContent = error;
          problem.hidden = false;
          return;
        }
        finish(true);
      });
      no.addEventListener("click", () => finish(false));
      dialog.addEventListener("cancel", () => finish(false)); // Escape
      document.body.append(dialog);
      dialog.showModal();
      yes.focus();
    });
  }

  let noticeTimer = 0;
  function notify(message, isError) {
    let box = document.getElementById("notice");
    if (!box) {
      box = el("div", { id: "notice", class: "notice", role: "status" });
      document.body.append(box);
    }
    box.className = "notice" + (isError ? " error" : "");
    box.textContent = message;
    box.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => (box.hidden = true), isError ? 8000 : 4000);
  }

  // ------------------------------------------------------------------------ formatting

  const pad = (n, w = 2) => String(n).padStart(w, "0");

  // The host's clock minus ours: "5m ago" is judged by the host's time (which `dev` can move
  // forward), not by the browser's. Every answer that carries the host's `now` updates it.
  let skew = 0;
  function syncClock(hostNow) {
    if (typeof hostNow === "number") skew = hostNow - Date.now();
  }
  function now() {
    return Date.now() + skew;
  }

  /** A full local time with milliseconds and the UTC offset, e.g. 2026-12-04 08:41:03.120 UTC+01:00. */
  function fmtFull(ms) {
    if (ms === null || ms === undefined) return "";
    const d = new Date(ms);
    const offset = -d.getTimezoneOffset();
    const zone = "UTC" + (offset >= 0 ? "+" : "-") + pad(Math.floor(Math.abs(offset) / 60)) + ":" + pad(Math.abs(offset) % 60);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)} ${zone}`;
  }

  /** How long ago (or how far ahead) `ms` is by the host's clock, e.g. "5m ago", "in 2h". */
  function fmtAgo(ms) {
    if (ms === null || ms === undefined) return "–";
    const delta = now() - ms;
    const abs = Math.abs(delta);
    if (abs < 1000) return "just now";
    let text;
    if (abs < 60_000) text = Math.floor(abs / 1000) + "s";
    else if (abs < 3_600_000) text = Math.floor(abs / 60_000) + "m";
    else if (abs < 86_400_000) text = Math.floor(abs / 3_600_000) + "h";
    else if (abs < 365 * 86_400_000) text = Math.floor(abs / 86_400_000) + "d";
    else text = Math.floor(abs / (365 * 86_400_000)) + "y";
    return delta >= 0 ? text + " ago" : "in " + text;
  }

  /** A <time> saying "5m ago" (kept current), with the full time on hover. */
  function timeAgo(ms, prefix) {
    if (ms === null || ms === undefined) return el("span", { class: "muted" }, "–");
    return el("time", { class: "ago", datetime: new Date(ms).toISOString(), title: fmtFull(ms), dataset: { at: String(ms), prefix: prefix || "" } }, (prefix || "") + fmtAgo(ms));
  }

  /** Read the host's clock (for pages whose data carries none); again every 30 s, so a `dev`
   * clock advance shows up without a reload. */
  function followHostClock() {
    async function sync() {
      try {
        syncClock((await api("/_platform/api/overview")).now);
        refreshTimes();
      } catch {
        // the page's own requests report a host that is away
      }
    }
    sync();
    setInterval(sync, 30_000);
  }

  function refreshTimes() {
    for (const node of document.querySelectorAll("time[data-at]")) {
      const text = node.dataset.prefix + fmtAgo(Number(node.dataset.at));
      if (node.textContent !== text) node.textContent = text;
    }
  }
  setInterval(refreshTimes, 1000);

  function fmtDuration(ms) {
    if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
    ms = Math.max(0, Math.round(ms));
    if (ms < 1000) return ms + " ms";
    const s = ms / 1000;
    if (s < 60) return (s < 10 ? s.toFixed(2) : s.toFixed(1)) + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return `${m}m ${pad(Math.floor(s % 60))}s`;
    const h = Math.floor(m / 60);
    if (h < 48) return `${h}h ${pad(m % 60)}m`;
    return `${Math.floor(h / 24)}d ${h % 24}h`;
  }

  function fmtRelative(ms, at) {
    const delta = ms - (at ?? now());
    const text = fmtDuration(Math.abs(delta));
    return delta >= 0 ? "in " + text : text + " ago";
  }

  function fmtBytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
    return (n / 1024 / 1024).toFixed(1) + " MiB";
  }

  function oneLine(value, max = 160) {
    const text = value === undefined ? "" : JSON.stringify(value);
    return text.length > max ? text.slice(0, max) + "…" : text;
  }

  // ----------------------------------------------------------------------- live stream

  function setLive(on) {
    const node = document.getElementById("live");
    if (!node) return;
    node.classList.toggle("on", on);
    node.textContent = on ? "live" : "reconnecting…";
  }

  function parseBlock(block) {
    let id = null;
    let type = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "id") id = Number(value);
      else if (field === "event") type = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length) return null;
    try {
      return { id, type, event: JSON.parse(data.join("\n")) };
    } catch {
      return null;
    }
  }

  /**
   * Follow /api/events/stream (filters t, r, ns). fetch() rather than EventSource: the stream
   * names each event by its type, which EventSource cannot listen to all of, and fetch sends
   * the token as a header. Reconnects with ?since=<last id>, so nothing is missed in between.
   * Returns {stop()}.
   */
  function live(filters, handlers) {
    let since = filters.since ?? null;
    let stopped = false;
    let controller = null;
    let delay = 500;
    const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

    async function loop() {
      while (!stopped) {
        controller = new AbortController();
        let opened = false;
        try {
          const params = { t: filters.t, r: filters.r, ns: filters.ns, since };
          const res = await fetch("/api/events/stream" + query(params), {
            headers: authHeaders(),
            signal: controller.signal,
            cache: "no-store",
          });
          if (!res.ok || !res.body) throw new Error("stream answered " + res.status);
          const reader = res.body.getReader();
          const decoder = new TextDecoder();
          let buffer = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
            let cut;
            while ((cut = buffer.indexOf("\n\n")) >= 0) {
              const block = buffer.slice(0, cut);
              buffer = buffer.slice(cut + 2);
              if (!opened) {
                opened = true;
                delay = 500;
                setLive(true);
                if (handlers.onOpen) handlers.onOpen();
              }
              const message = parseBlock(block);
              if (message) {
                if (message.id !== null && !Number.isNaN(message.id)) since = message.id;
                handlers.onEvent(message.event);
              }
            }
          }
        } catch (error) {
          if (stopped) return;
        }
        setLive(false);
        await sleep(delay);
        delay = Math.min(delay * 2, 5000);
      }
    }

    loop();
    return {
      stop() {
        stopped = true;
        if (controller) controller.abort();
      },
    };
  }

  /** Call fn at most once per `ms`, and once more after the last call (trailing). */
  function throttle(fn, ms) {
    let last = 0;
    let timer = 0;
    let running = false;
    let again = false;
    async function run() {
      if (running) {
        again = true;
        return;
      }
      running = true;
      last = Date.now();
      try {
        await fn();
      } finally {
        running = false;
        if (again) {
          again = false;
          schedule();
        }
      }
    }
    function schedule() {
      if (timer) return;
      const wait = Math.max(0, last + ms - Date.now());
      timer = setTimeout(() => {
        timer = 0;
        run();
      }, wait);
    }
    return schedule;
  }

  /** Mark the current page in the header and carry the token on its links. */
  function initChrome() {
    const page = document.body.dataset.page;
    for (const a of document.querySelectorAll("a[data-nav]")) {
      a.href = withToken(a.getAttribute("href"));
      if (a.dataset.nav === page) {
        a.classList.add("current");
        a.setAttribute("aria-current", "page");
      }
    }
  }

  /** Say in the header which process is the store's worker: this host, or (on a standby host,
   * which serves the API as a client) another one; asked again every 30 s, so a takeover shows. */
  function followWorker() {
    const header = document.querySelector("header.top");
    if (!header) return;
    const node = el("span", { id: "worker", class: "worker" });
    header.append(node);
    async function look() {
      try {
        const { worker } = await api("/_platform/api/overview");
        const role = worker.self ? "worker" : "standby";
        node.dataset.role = role;
        if (worker.self) node.textContent = `worker · pid ${worker.pid}`;
        else if (worker.pid !== null) node.textContent = `standby · the worker is pid ${worker.pid}`;
        else node.textContent = "standby · no worker: taking over";
        node.title = worker.self
          ? "this host runs the workflows, timers and handlers of its store"
          : "this host serves the API as a client of the store and takes over when the worker dies";
      } catch {
        // the page's own requests report a host that is away
      }
    }
    look();
    setInterval(look, 30_000);
  }

  document.addEventListener("DOMContentLoaded", initChrome);
  document.addEventListener("DOMContentLoaded", followWorker);

  return {
    STATUSES,
    TERMINAL,
    api,
    badge,
    confirmDialog,
    el,
    fmtBytes,
    fmtDuration,
    fmtFull,
    fmtAgo,
    followHostClock,
    fmtRelative,
    href,
    jsonBlock,
    jsonText,
    live,
    notify,
    now,
    oneLine,
    query,
    runHref,
    runLink,
    syncClock,
    textBlock,
    throttle,
    timeAgo,
    withToken,
  };
})();
