// System administration: users and their roles, garbage collection, the audit log.

import { ROLES, del, get, post, put, seg } from "../api.js";
import {
  attempt, badge, button, bytes, checkbox, confirm, details, field, flash, h, link, orNone, pager, replace, select,
  table, time, yesNo,
} from "../dom.js";
import { keysPanel } from "./keys.js";
import { breadcrumbs, registryHref, revokeRole } from "./registries.js";

// -- users ----------------------------------------------------------------------------------------

export async function usersView(ctx) {
  const answer = await get("/users");
  const rows = answer.users.map((u) => [
    link(`#/users/${seg(u.name)}`, u.name),
    u.system_admin ? badge("system administrator", "info") : "",
    time(u.created_at),
    u.name === ctx.me.user ? "(you)" : button("Delete", () => deleteUser(ctx, u.name),
      { kind: "danger", "aria-label": `Delete user ${u.name}` }),
  ]);
  const name = h("input", { name: "name", required: true, autocomplete: "off" });
  const password = h("input", { name: "password", type: "password", autocomplete: "new-password" });
  const admin = checkbox("System administrator", { name: "system_admin" });
  const form = h("form", { class: "card", "aria-labelledby": "create-user-title" },
    h("h2", { id: "create-user-title" }, "Create a user"),
    field("User name", name),
    field("Password", password, "Optional: without one, the user logs in only with access keys."),
    admin,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Create user")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      const created = await post("/users", { name: name.value.trim(), password: password.value || undefined,
        system_admin: admin.querySelector("input").checked });
      flash(`User ${created.name} created.`);
      ctx.go(`#/users/${seg(created.name)}`);
    });
  });
  return h("section", {},
    h("h1", {}, "Users"),
    h("details", { class: "panel" }, h("summary", {}, "Create a user"), form),
    table("Users", ["Name", "Role", "Created", "Actions"], rows, "No users."));
}

async function deleteUser(ctx, name) {
  const ok = await confirm(`Delete user ${name}?`, `${name}'s roles and access keys are removed.`, "Delete user");
  if (!ok) return;
  await attempt(async () => {
    await del(`/users/${seg(name)}`);
    flash(`User ${name} deleted.`);
    ctx.go("#/users");
  });
}

export async function userView(ctx) {
  const [name] = ctx.params;
  const [roles, registries] = await Promise.all([get(`/users/${seg(name)}/roles`), get("/registries")]);
  const rows = roles.roles.map((r) => [
    r.registry === "*" ? "* (every registry)" : link(registryHref(r.registry), r.registry),
    r.role,
    button("Revoke", () => revokeRole(ctx, name, r.registry),
      { kind: "danger", "aria-label": `Revoke the role on ${r.registry}` }),
  ]);
  const where = select([["*", "* (every registry)"], ...registries.registries.map((r) => [r.name, r.name])],
    { name: "registry" });
  const role = select(ROLES.map((r) => [r, r]), { name: "role" });
  const grant = h("form", { class: "inline", "aria-labelledby": "grant-user-title" },
    h("h3", { id: "grant-user-title", class: "visually-hidden" }, "Grant a role"),
    field("Registry", where), field("Role", role), h("button", { type: "submit" }, "Grant role"));
  grant.addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      await put(`/users/${seg(name)}/roles/${seg(where.value)}`, { role: role.value });
      flash(`${name} is now ${role.value} on ${where.value === "*" ? "every registry" : where.value}.`);
      ctx.reload();
    });
  });
  return h("section", {},
    breadcrumbs([["#/users", "Users"]], name),
    h("h1", {}, `User ${name}`),
    h("section", { "aria-labelledby": "roles-title" },
      h("h2", { id: "roles-title" }, "Roles"),
      table(`Roles of ${name}`, ["Registry", "Role", "Actions"], rows, "No roles."),
      grant),
    await keysPanel(ctx, name, name));
}

// -- garbage collection ---------------------------------------------------------------------------

function runSummary(run) {
  return details([
    ["Kind", run.dry_run ? "dry run (nothing removed)" : "run"],
    ["Started", time(run.started_at)],
    ["Finished", time(run.finished_at)],
    [run.dry_run ? "Blobs to remove" : "Blobs removed", String(run.blobs_removed)],
    [run.dry_run ? "Manifests to remove" : "Manifests removed", String(run.manifests_removed)],
    [run.dry_run ? "Uploads to remove" : "Uploads removed", String(run.uploads_removed ?? 0)],
    [run.dry_run ? "Space to free" : "Space freed", bytes(run.bytes_freed)],
  ]);
}

function digestList(title, items) {
  if (!items || items.length === 0) return null;
  const text = (item) => (typeof item === "string" ? item : item.digest || JSON.stringify(item));
  return h("details", {}, h("summary", {}, `${title} (${items.length})`),
    h("ul", { class: "digests" }, items.slice(0, 500).map((item) => h("li", {}, h("code", {}, text(item))))));
}

export async function gcView(ctx) {
  const result = h("section", { "aria-labelledby": "gc-result-title", class: "results" });
  const history = h("div", { class: "results" });
  const untagged = checkbox("Also delete manifests that no tag, index or subject keeps", { name: "delete_untagged" });
  let page = 1;

  async function loadHistory() {
    const answer = await get("/gc", { page });
    const rows = answer.runs.map((run) => [
      time(run.started_at), time(run.finished_at), yesNo(run.dry_run), String(run.blobs_removed),
      String(run.manifests_removed), String(run.uploads_removed ?? 0), bytes(run.bytes_freed),
    ]);
    replace(history,
      table("Garbage collection runs", ["Started", "Finished", "Dry run", "Blobs", "Manifests", "Uploads", "Freed"],
        rows, "No runs yet."),
      pager(answer, (p) => { page = p; attempt(loadHistory); }, "runs"));
  }

  async function run(dryRun) {
    if (!dryRun && !(await confirm("Run garbage collection now?",
      "Unreferenced blobs (and, if chosen, untagged manifests) older than the grace period are deleted.",
      "Run GC"))) {
      return;
    }
    await attempt(async () => {
      replace(result, h("p", {}, dryRun ? "Dry run in progress..." : "Garbage collection in progress..."));
      const answer = await post("/gc", { dry_run: dryRun, delete_untagged: untagged.querySelector("input").checked });
      replace(result, h("h2", { id: "gc-result-title" }, dryRun ? "Dry run result" : "Result"), runSummary(answer),
        digestList("Blobs", answer.blobs), digestList("Manifests", answer.manifests));
      flash(dryRun ? "Dry run finished: nothing was removed." : "Garbage collection finished.");
      page = 1;
      await loadHistory();
    });
  }

  await loadHistory();
  return h("section", {},
    h("h1", {}, "Garbage collection"),
    h("p", {}, "GC removes blobs no manifest references and abandoned uploads, while pushes go on. ",
      "A dry run only reports what would be removed."),
    h("div", { class: "card" }, untagged, h("div", { class: "actions" },
      button("Dry run", () => run(true)), " ", button("Run GC now", () => run(false), { kind: "danger" }))),
    result,
    h("section", { "aria-labelledby": "gc-history-title" }, h("h2", { id: "gc-history-title" }, "History"), history));
}

// -- audit log ------------------------------------------------------------------------------------

const ACTIONS = ["login", "push", "pull", "delete", "tag", "gc", "key", "registry", "user", "role"];

export async function auditView(ctx) {
  const results = h("div", { class: "results" });
  const actor = h("input", { name: "actor", value: ctx.query.get("actor") || "", autocomplete: "off" });
  const action = h("input", { name: "action", value: ctx.query.get("action") || "", list: "audit-actions",
    autocomplete: "off" });
  const registry = h("input", { name: "registry", value: ctx.query.get("registry") || "", autocomplete: "off" });
  const limit = select([["50", "50"], ["100", "100"], ["500", "500"]], { name: "limit", value: "100" });
  let before = null;
  let pages = [];

  async function load() {
    const filters = { actor: actor.value.trim(), action: action.value.trim(), registry: registry.value.trim() };
    ctx.setQuery(filters);
    const answer = await get("/audit", { ...filters, limit: limit.value, before });
    const rows = answer.entries.map((e) => [
      time(e.at), orNone(e.actor), e.action, e.outcome === "ok" ? e.outcome : badge(e.outcome, "warn"),
      orNone(e.registry), orNone(e.repository), orNone(e.target), orNone(e.client),
      e.detail === null || e.detail === undefined ? "-"
        : h("code", {}, typeof e.detail === "string" ? e.detail : JSON.stringify(e.detail)),
    ]);
    const older = answer.entries.length >= Number(limit.value) ? answer.entries[answer.entries.length - 1].id : null;
    replace(results,
      table("Audit log entries, newest first",
        ["Time", "Actor", "Action", "Outcome", "Registry", "Repository", "Target", "Client", "Detail"], rows,
        "No entries match."),
      h("nav", { class: "pager", "aria-label": "Audit log pages" },
        button("Newer entries", () => { before = pages.pop() ?? null; attempt(load); }, { disabled: pages.length === 0 }),
        " ",
        button("Older entries", () => { pages.push(before); before = older; attempt(load); }, { disabled: older === null })));
  }

  const form = h("form", { class: "inline", role: "search", "aria-label": "Audit log filters" },
    field("Actor", actor), field("Action", action), h("datalist", { id: "audit-actions" },
      ACTIONS.map((a) => h("option", { value: a }))),
    field("Registry", registry), field("Entries", limit), h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    before = null;
    pages = [];
    attempt(load);
  });
  await load();
  return h("section", {}, h("h1", {}, "Audit log"), form, results);
}
