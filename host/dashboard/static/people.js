/* The Data page's "Users" and "Realtime channels" section (from /_platform/api/people), shown
 * under the data browser and refreshed every few seconds. Text only, via Dash.el. */
"use strict";

(() => {
  const root = document.getElementById("people");
  if (!root) return;
  const { el } = Dash;

  function table(headers, rows, empty) {
    if (!rows.length) return el("p", { class: "muted", text: empty });
    return el("table", { class: "grid" },
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { text: h })))),
      el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", { text: String(c) }))))));
  }

  async function refresh() {
    let data;
    try {
      data = await Dash.api("/_platform/api/people");
    } catch (err) {
      root.replaceChildren(el("p", { class: "muted", text: "users and channels: " + err.message }));
      return;
    }
    const users = data.users.map((u) => [u.email, u.id, u.status, u.email_verified ? "yes" : "no",
      u.last_login_at ? Dash.fmtTime(u.last_login_at) : "never"]);
    const channels = data.channels.map((c) => [c.name,
      c.members.map((m) => m.userId).join(", ") || "nobody", c.subscribers, c.kept]);
    root.replaceChildren(
      el("h2", { text: `Users (${data.usersTotal})` }),
      table(["email", "id", "status", "verified", "last login"], users, "No users yet."),
      el("h2", { text: "Realtime channels" }),
      table(["channel", "present", "subscribers", "kept messages"], channels, "No active channel."),
    );
  }

  refresh();
  setInterval(refresh, 3000);
})();
