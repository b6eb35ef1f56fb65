/* /_platform/data: a read-only browser of KV namespaces, database collections and stored
 * objects. Every list is paged by the host (cursor, skip or `after`); values arrive as JSON
 * (large ones as previews) and are shown as text. */
"use strict";

(() => {
  const { el, api, query, jsonBlock, textBlock, timeAgo, fmtBytes, oneLine } = Dash;

  const PAGE = 50;
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const state = { tab: ["kv", "db", "storage"].includes(params.get("tab")) ? params.get("tab") : "kv", name: params.get("name") || "" };
  const names = $("names");
  const pane = $("pane");
  const browser = document.querySelector(".browser");
  // Each view bumps this; an answer that arrives after the user moved on is dropped.
  let view = 0;

  function remember() {
    history.replaceState(null, "", Dash.href("/_platform/data", { tab: state.tab, name: state.name }));
  }

  function fail(error) {
    pane.replaceChildren(el("p", { class: "empty" }, "Could not load: " + error.message));
  }

  function valueCell(value, truncated) {
    const line = truncated ? null : oneLine(value, 2000);
    if (line !== null && line.length <= 120) return el("td", { class: "mono clip value" }, line);
    return el("td", { class: "value" }, el("details", {}, el("summary", { class: "mono" }, truncated ? String(value).slice(0, 100) + "…" : line.slice(0, 100) + "…"), jsonBlock(value, truncated)));
  }

  // ----------------------------------------------------------------------------- tabs

  for (const a of document.querySelectorAll("#tabs a")) {
    a.href = Dash.href("/_platform/data", { tab: a.dataset.tab });
    a.addEventListener("click", (click) => {
      click.preventDefault();
      if (state.tab === a.dataset.tab) return;
      state.tab = a.dataset.tab;
      state.name = "";
      show();
    });
  }

  async function show() {
    const mine = ++view;
    for (const a of document.querySelectorAll("#tabs a")) {
      a.classList.toggle("current", a.dataset.tab === state.tab);
      if (a.dataset.tab === state.tab) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    remember();
    pane.replaceChildren();
    if (state.tab === "storage") {
      browser.classList.add("single");
      names.hidden = true;
      showStorage("");
      return;
    }
    browser.classList.remove("single");
    names.hidden = false;
    names.replaceChildren(el("p", { class: "note" }, "loading…"));
    let listing;
    try {
      listing = await api(state.tab === "kv" ? "/_platform/api/kv" : "/_platform/api/db");
    } catch (error) {
      if (mine !== view) return;
      names.replaceChildren();
      fail(error);
      return;
    }
    if (mine !== view) return;
    const unit = state.tab === "kv" ? "keys" : "documents";
    const buttons = listing.items.map((item) =>
      el(
        "button",
        { type: "button", dataset: { name: item.name }, title: item.name, onclick: () => select(item.name) },
        el("span", { class: "name" }, item.name),
        el("span", { class: "n" }, Number(item[unit]).toLocaleString()),
      ),
    );
    names.replaceChildren(...buttons);
    if (listing.truncated) names.append(el("p", { class: "note" }, "showing the first names only"));
    if (!listing.items.length) {
      names.append(el("p", { class: "note" }, state.tab === "kv" ? "no namespaces yet" : "no collections yet"));
      pane.replaceChildren(el("p", { class: "empty" }, state.tab === "kv" ? "Nothing stored in KV yet." : "No documents yet."));
      return;
    }
    const known = listing.items.some((item) => item.name === state.name);
    select(known ? state.name : listing.items[0].name);
  }

  function select(name) {
    state.name = name;
    remember();
    for (const b of names.querySelectorAll("button")) {
      b.classList.toggle("current", b.dataset.name === name);
      b.setAttribute("aria-pressed", b.dataset.name === name ? "true" : "false");
    }
    if (state.tab === "kv") showKv(name, "");
    else showCollection(name, "", 0);
  }

  // ------------------------------------------------------------------------------- KV

  async function showKv(ns, prefix) {
    const mine = ++view;
    const prefixInput = el("input", { placeholder: "key prefix", value: prefix, size: "28", "aria-label": "key prefix" });
    const form = el("form", { class: "toolbar" }, prefixInput, el("button", { type: "submit" }, "Filter"));
    form.addEventListener("submit", (submit) => {
      submit.preventDefault();
      showKv(ns, prefixInput.value);
    });
    const body = el("tbody");
    const more = el("button", { type: "button", hidden: true }, "Load more keys");
    pane.replaceChildren(
      el("h2", {}, "Namespace ", el("code", {}, ns)),
      form,
      el("table", { class: "grid", id: "kv-keys" }, el("thead", {}, el("tr", {}, el("th", {}, "Key"), el("th", {}, "Value"), el("th", {}, "Expires"))), body),
      el("div", { class: "more" }, more),
    );
    let cursor = null;
    async function page() {
      let answer;
      try {
        answer = await api("/_platform/api/kv/keys" + query({ ns, prefix, cursor, limit: PAGE }));
      } catch (error) {
        if (mine === view) fail(error);
        return;
      }
      if (mine !== view) return;
      for (const key of answer.keys) {
        body.append(
          el(
            "tr",
            { dataset: { key: key.name } },
            el("td", { class: "mono" }, key.name),
            "value" in key ? valueCell(key.value, key.truncated) : el("td", { class: "muted" }, "(gone)"),
            el("td", { class: "time" }, key.expiration ? timeAgo(key.expiration) : "never"),
          ),
        );
      }
      if (!body.children.length) body.append(el("tr", {}, el("td", { colspan: "3", class: "empty" }, "no keys")));
      cursor = answer.cursor;
      more.hidden = !cursor;
    }
    more.addEventListener("click", page);
    await page();
  }

  // -------------------------------------------------------------------------- database

  async function showCollection(coll, filterText, skip) {
    const mine = ++view;
    const filterInput = el("input", { placeholder: '{"status": "active"}', value: filterText, size: "40", class: "mono", "aria-label": "filter" });
    const form = el("form", { class: "toolbar" }, el("label", {}, "Filter", filterInput), el("button", { type: "submit" }, "Find"));
    form.addEventListener("submit", (submit) => {
      submit.preventDefault();
      showCollection(coll, filterInput.value.trim(), 0);
    });
    let answer;
    try {
      answer = await api("/_platform/api/db/docs" + query({ coll, filter: filterText, skip, limit: PAGE }));
    } catch (error) {
      if (mine !== view) return;
      pane.replaceChildren(el("h2", {}, "Collection ", el("code", {}, coll)), form, el("p", { class: "empty" }, error.message));
      return;
    }
    if (mine !== view) return;
    const rows = answer.docs.map((item) =>
      el("tr", { dataset: { id: String(item.id) } }, el("td", { class: "mono" }, String(item.id)), el("td", {}, jsonBlock(item.doc, item.truncated))),
    );
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "2", class: "empty" }, "no documents match")));
    const prev = el("button", { type: "button", disabled: skip === 0, onclick: () => showCollection(coll, filterText, Math.max(0, skip - PAGE)) }, "‹ Previous");
    const next = el("button", { type: "button", disabled: skip + PAGE >= answer.total, onclick: () => showCollection(coll, filterText, skip + PAGE) }, "Next ›");
    const range = answer.total ? `${(skip + 1).toLocaleString()}–${Math.min(skip + PAGE, answer.total).toLocaleString()} of ${answer.total.toLocaleString()}` : "0 documents";
    pane.replaceChildren(
      el("h2", {}, "Collection ", el("code", {}, coll), el("span", { class: "muted" }, `${answer.total.toLocaleString()} document${answer.total === 1 ? "" : "s"}`)),
      form,
      el("table", { class: "grid", id: "documents" }, el("thead", {}, el("tr", {}, el("th", {}, "_id"), el("th", {}, "Document"))), el("tbody", {}, rows)),
      el("div", { class: "more" }, prev, el("span", { class: "muted" }, range), next),
    );
  }

  // --------------------------------------------------------------------------- storage

  async function showStorage(prefix) {
    const mine = ++view;
    const prefixInput = el("input", { placeholder: "key prefix, e.g. uploads/", value: prefix, size: "32", "aria-label": "key prefix" });
    const form = el("form", { class: "toolbar" }, prefixInput, el("button", { type: "submit" }, "Filter"));
    form.addEventListener("submit", (submit) => {
      submit.preventDefault();
      showStorage(prefixInput.value);
    });
    const body = el("tbody");
    const more = el("button", { type: "button", hidden: true }, "Load more objects");
    pane.replaceChildren(
      el("h2", {}, "Stored objects"),
      form,
      el(
        "table",
        { class: "grid", id: "objects" },
        el("thead", {}, el("tr", {}, ...["Key", "Size", "Content type", "Modified", "Metadata", ""].map((h) => el("th", {}, h)))),
        body,
      ),
      el("div", { class: "more" }, more),
    );
    let after = null;
    async function page() {
      let answer;
      try {
        answer = await api("/_platform/api/storage" + query({ prefix, after, limit: PAGE }));
      } catch (error) {
        if (mine === view) fail(error);
        return;
      }
      if (mine !== view) return;
      for (const item of answer.items) body.append(objectRow(item));
      if (!body.children.length) body.append(el("tr", {}, el("td", { colspan: "6", class: "empty" }, "no objects")));
      after = answer.next;
      more.hidden = !after;
    }
    more.addEventListener("click", page);
    await page();
  }

  function objectRow(item) {
    const preview = el("button", { type: "button", class: "small" }, "Preview");
    // `download`: a stored text/html object must not render on the dashboard's origin.
    const download = el("a", { href: Dash.withToken("/api/storage/" + encodeURIComponent(item.key)), download: item.key.split("/").pop() || "object" }, "Download");
    const tr = el(
      "tr",
      { dataset: { key: item.key } },
      el("td", { class: "mono" }, item.key),
      el("td", { class: "num" }, fmtBytes(item.size)),
      el("td", { class: "mono" }, item.contentType),
      el("td", { class: "time" }, timeAgo(item.lastModified)),
      el("td", { class: "mono clip" }, item.metadata ? oneLine(item.metadata, 200) : ""),
      el("td", {}, preview, " ", download),
    );
    preview.addEventListener("click", async () => {
      const after = tr.nextElementSibling;
      if (after && after.classList.contains("detail-row")) {
        after.remove();
        return;
      }
      let shown;
      try {
        const answer = await api("/_platform/api/storage/preview" + query({ key: item.key }));
        shown = answer.text === null ? el("p", { class: "note" }, `${fmtBytes(answer.size)} of ${answer.contentType}: binary or too large to preview`) : el("div", {}, textBlock(answer.text), answer.truncated ? el("p", { class: "note" }, `first ${fmtBytes(answer.text.length)} of ${fmtBytes(answer.size)}`) : null);
      } catch (error) {
        shown = el("p", { class: "note" }, error.message);
      }
      tr.after(el("tr", { class: "detail-row" }, el("td", { colspan: "6" }, shown)));
    });
    return tr;
  }

  Dash.followHostClock();
  show();
})();
