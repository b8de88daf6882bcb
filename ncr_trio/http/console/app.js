// The console's shell: login, navigation and a hash router over the views.

import { can, get, login, logout, session, setUnauthorizedHandler } from "./api.js";
import { button, clearStaleFlash, field, flash, h, replace, showError } from "./dom.js";
import { auditView, gcView, userView, usersView } from "./views/admin.js";
import { cacheView, cachesView } from "./views/caches.js";
import { artifactView, imageView } from "./views/images.js";
import { keysView } from "./views/keys.js";
import { cleanupRunView } from "./views/policies.js";
import { registriesView, registryView } from "./views/registries.js";
import { remoteView, remotesView } from "./views/remotes.js";
import { executionView, policyView } from "./views/replication.js";
import { scanningView } from "./views/scans.js";
import { trustKeysView } from "./views/trust.js";
import { webhookView } from "./views/webhooks.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const account = document.getElementById("account");

// Path patterns (after "#"), each with its view; captured parts are URI-decoded.
const ROUTES = [
  [/^\/registries$/, registriesView],
  [/^\/registries\/([^/]+)(?:\/(images|tags|members|webhooks|cleanup|protection|replication|trust|settings))?$/,
    registryView],
  [/^\/registries\/([^/]+)\/webhooks\/(\d+)$/, webhookView],
  [/^\/registries\/([^/]+)\/cleanup\/runs\/(\d+)$/, cleanupRunView],
  [/^\/registries\/([^/]+)\/replication\/(\d+)$/, policyView],
  [/^\/registries\/([^/]+)\/replication\/(\d+)\/executions\/(\d+)$/, executionView],
  [/^\/registries\/([^/]+)\/images\/([^/]+)$/, imageView],
  [/^\/registries\/([^/]+)\/images\/([^/]+)\/artifacts\/([^/]+)$/, artifactView],
  [/^\/keys$/, keysView],
  [/^\/users$/, usersView, "admin"],
  [/^\/users\/([^/]+)$/, userView, "admin"],
  [/^\/caches$/, cachesView, "admin"],
  [/^\/caches\/([^/]+)$/, cacheView, "admin"],
  [/^\/remotes$/, remotesView, "admin"],
  [/^\/remotes\/([^/]+)$/, remoteView, "admin"],
  [/^\/gc$/, gcView, "admin"],
  [/^\/scanning$/, scanningView, "admin"],
  [/^\/trust-keys$/, trustKeysView, "admin"],
  [/^\/audit$/, auditView, "admin"],
];

function location_() {
  const raw = window.location.hash.replace(/^#/, "") || "/registries";
  const [path, search = ""] = raw.split("?", 2);
  return { path, query: new URLSearchParams(search) };
}

export function go(hash) {
  if (window.location.hash === hash) render();
  else window.location.hash = hash;
}

// Keeps the current view's state (search text, page) in the address without re-rendering.
function setQuery(values) {
  const { path } = location_();
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(values)) {
    if (value !== undefined && value !== null && value !== "" && value !== 1) params.set(key, String(value));
  }
  const text = params.toString();
  history.replaceState(null, "", `#${path}${text ? "?" + text : ""}`);
}

function showNav(me, path) {
  const items = [["#/registries", "Registries"], ["#/keys", "Access keys"]];
  if (me.system_admin) {
    items.push(["#/caches", "Image caches"], ["#/remotes", "Remotes"], ["#/users", "Users"],
      ["#/gc", "Garbage collection"], ["#/scanning", "Scanning"], ["#/trust-keys", "Trusted keys"],
      ["#/audit", "Audit log"]);
  }
  replace(nav, h("ul", {}, items.map(([href, label]) =>
    h("li", {}, h("a", { href, "aria-current": path.startsWith(href.slice(1)) ? "page" : undefined }, label)))));
  nav.hidden = false;
  const who = me.system_admin ? `${me.user} (system administrator)` : me.user;
  replace(account,
    h("span", { class: "who" }, "Signed in as ", h("strong", {}, who), me.key_id ? ` with key ${me.key_id}` : ""),
    " ", button("Log out", () => {
      logout();
      flash("You are logged out.");
      render();
    }));
  account.hidden = false;
}

function hideNav() {
  nav.hidden = true;
  account.hidden = true;
  nav.replaceChildren();
  account.replaceChildren();
}

function loginView(message) {
  hideNav();
  document.title = "Log in - ncr-trio";
  const user = h("input", { name: "username", autocomplete: "username", required: true, autofocus: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password",
    required: true });
  const submit = h("button", { type: "submit" }, "Log in");
  const form = h("form", { class: "card login", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Log in to ncr-trio"),
    message ? h("p", { class: "hint" }, message) : null,
    field("User name or access key ID", user),
    field("Password or secret", password),
    h("div", { class: "actions" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    showError(null);
    try {
      await login(user.value.trim(), password.value);
    } catch (error) {
      showError(error);
      submit.disabled = false;
      password.select();
      return;
    }
    password.value = "";
    await render();
  });
  replace(main, form);
  user.focus();
}

let generation = 0;
let navigated = true;

export async function render() {
  const mine = ++generation;
  if (!session()) {
    loginView();
    return;
  }
  let me;
  try {
    me = await get("/whoami");
  } catch (error) {
    if (mine === generation && error.status !== 401) {
      showError(error);
    }
    return;
  }
  if (mine !== generation) return;
  const { path, query } = location_();
  showNav(me, path);
  let node = null;
  for (const [pattern, view, needs] of ROUTES) {
    const m = pattern.exec(path);
    if (!m) continue;
    if (needs === "admin" && !me.system_admin) break;
    const params = m.slice(1).map((part) => (part === undefined ? undefined : decodeURIComponent(part)));
    // alive(): whether this view is still the one shown (a view polling the API stops when it is not).
    const ctx = { me, params, query, go, reload: render, setQuery, can: (perm, registry) => can(me, perm, registry),
      alive: () => mine === generation };
    try {
      node = await view(ctx);
    } catch (error) {
      if (error.status === 401) return;
      node = h("section", {}, h("h1", { tabindex: "-1" }, "Something went wrong"),
        h("p", {}, error.message), h("p", {}, h("a", { href: "#/registries" }, "Back to the registries")));
    }
    break;
  }
  if (mine !== generation) return;
  if (node === null) {
    node = h("section", {}, h("h1", { tabindex: "-1" }, "Not found"),
      h("p", {}, "There is no such page, or your role does not show it."),
      h("p", {}, h("a", { href: "#/registries" }, "Back to the registries")));
  }
  replace(main, node);
  const heading = main.querySelector("h1");
  document.title = `${heading ? heading.textContent : "Console"} - ncr-trio`;
  if (navigated && heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
  navigated = false;
}

setUnauthorizedHandler(() => {
  generation++;
  loginView("Your session has ended: log in again.");
});

window.addEventListener("hashchange", () => {
  navigated = true;
  showError(null);
  clearStaleFlash();
  render();
});

render();
