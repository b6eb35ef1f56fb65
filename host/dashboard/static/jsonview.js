/* A collapsible JSON viewer: objects and arrays fold (<details>), values are coloured by type,
 * and a Copy button copies the whole value. Built with textContent only, like every page.
 *
 * Unfolded, the tree's text *is* the JSON (brackets, quoted keys, commas; a folded node's
 * summary is hidden when it is open), so selecting it and copying gives valid JSON too. The
 * DOM stays bounded: containers past MAX_CHILDREN show the first ones and say how many more. */
"use strict";

const JsonView = (() => {
  const MAX_CHILDREN = 200;
  const OPEN_DEPTH = 2; // deeper containers start folded
  const OPEN_SIZE = 50; // so do containers with more children than this

  function make(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function scalar(value) {
    const kind = value === null ? "null" : typeof value;
    return make("span", "jv-" + kind, JSON.stringify(value));
  }

  function keyOf(key) {
    return key === undefined ? null : make("span", "jv-key", JSON.stringify(key) + ": ");
  }

  function line(key, value, comma) {
    const row = make("div", "jv-line");
    const k = keyOf(key);
    if (k) row.append(k);
    row.append(scalar(value));
    if (comma) row.append(",");
    return row;
  }

  function node(value, key, depth, comma) {
    if (value === null || typeof value !== "object") return line(key, value, comma);
    const isArray = Array.isArray(value);
    const entries = isArray ? value.map((v, i) => [undefined, v, i]) : Object.entries(value).map(([k, v]) => [k, v]);
    const [open, close] = isArray ? ["[", "]"] : ["{", "}"];
    if (!entries.length) return line(key, isArray ? [] : {}, comma);
    const details = make("details", "jv-node");
    details.open = depth < OPEN_DEPTH && entries.length <= OPEN_SIZE;
    const summary = make("summary");
    const k = keyOf(key);
    if (k) summary.append(k);
    summary.append(open);
    const count = entries.length + (isArray ? (entries.length === 1 ? " item" : " items") : entries.length === 1 ? " key" : " keys");
    summary.append(make("span", "jv-folded", ` … ${close}${comma ? "," : ""} `), make("span", "jv-count", count));
    const body = make("div", "jv-body");
    const shown = entries.slice(0, MAX_CHILDREN);
    shown.forEach(([childKey, child], i) => body.append(node(child, childKey, depth + 1, i < entries.length - 1)));
    if (entries.length > shown.length) body.append(make("div", "jv-more", `… ${entries.length - shown.length} more not shown`));
    const end = make("div", "jv-close", close + (comma ? "," : ""));
    details.append(summary, body, end);
    return details;
  }

  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // Not a secure context (a host reached over plain http by name): the old way.
      const area = make("textarea");
      area.value = text;
      area.style.cssText = "position:fixed;opacity:0";
      document.body.append(area);
      area.select();
      const done = document.execCommand("copy");
      area.remove();
      return done;
    }
  }

  /** A small "Copy" button that copies `text()` (a function, so it reads the current value). */
  function copyButton(text, label) {
    const button = make("button", "small copy", "Copy");
    button.type = "button";
    button.title = label || "copy to the clipboard";
    button.setAttribute("aria-label", label || "copy");
    button.addEventListener("click", async (click) => {
      click.preventDefault();
      click.stopPropagation();
      const ok = await copyText(text());
      button.textContent = ok ? "Copied" : "Copy failed";
      setTimeout(() => (button.textContent = "Copy"), 1200);
    });
    return button;
  }

  /** The viewer for one JSON value, with its Copy button and Expand/Collapse all. */
  function render(value) {
    const root = make("div", "jsonview");
    const tree = make("div", "json jv-tree");
    tree.append(node(value, undefined, 0, false));
    const tools = make("div", "jv-tools");
    if (value !== null && typeof value === "object") {
      for (const [label, open] of [
        ["Expand all", true],
        ["Collapse all", false],
      ]) {
        const button = make("button", "small", label);
        button.type = "button";
        button.addEventListener("click", () => {
          for (const d of tree.querySelectorAll("details")) d.open = open;
          if (!open) tree.querySelector("details").open = true;
        });
        tools.append(button);
      }
    }
    tools.append(copyButton(() => JSON.stringify(value, null, 2), "copy the JSON"));
    root.append(tools, tree);
    return root;
  }

  return { render, copyButton, copyText };
})();
