// Registries: the list, creating one, and a registry's pages (images, tags, members, settings, and the
// webhooks, cleanup, protection and replication tabs of views/webhooks.js, views/policies.js and
// views/replication.js).

import { ROLES, del, get, imagePath, patch, post, put, seg } from "../api.js";
import {
  attempt, badge, button, bytes, checkbox, confirm, details, field, flash, h, link, pager, replace, select,
  shortDigest, table, time, yesNo,
} from "../dom.js";
import { cacheHref } from "./caches.js";
import { cleanupTab, protectionTab } from "./policies.js";
import { replicationTab } from "./replication.js";
import { registryScanSettings } from "./scans.js";
import { registryTrustSettings, trustTab } from "./trust.js";
import { webhooksTab } from "./webhooks.js";

export function registryHref(registry, tab) {
  return `#/registries/${seg(registry)}${tab ? "/" + tab : ""}`;
}

export function imageHref(registry, image) {
  return `#/registries/${seg(registry)}/images/${seg(image)}`;
}

export function artifactHref(registry, image, digest) {
  return `${imageHref(registry, image)}/artifacts/${seg(digest)}`;
}

function cidrList(text) {
  return text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
}

// The fields a registry is created or changed with.
function settingsFields(current) {
  const description = h("input", { name: "description", value: current ? current.description : "" });
  const publicRead = h("input", { type: "checkbox", name: "public_read", checked: current ? current.public_read : false });
  const publicUri = h("input", { type: "checkbox", name: "public_uri", checked: current ? current.public_uri : true });
  const cidrs = h("input", { name: "allowed_cidrs", value: current ? current.allowed_cidrs.join(", ") : "",
    placeholder: "10.0.0.0/8, 192.168.1.0/24" });
  const nodes = [
    field("Description", description),
    h("label", { class: "check" }, publicRead, " Public read (anyone may pull without logging in)"),
    h("label", { class: "check" }, publicUri, " Reachable on the public URI"),
    field("Allowed CIDR blocks", cidrs, "Comma-separated; empty allows every client."),
  ];
  const values = () => ({
    description: description.value,
    public_read: publicRead.checked,
    public_uri: publicUri.checked,
    allowed_cidrs: cidrList(cidrs.value),
  });
  return { nodes, values };
}

export async function registriesView(ctx) {
  const answer = await get("/registries");
  const canCreate = ctx.can("manage", "*");
  const rows = answer.registries.map((r) => [
    link(registryHref(r.name), r.name),
    registryType(r),
    r.description || "",
    r.public_read ? badge("public read", "info") : badge("private"),
    r.public_uri ? "public and private" : "private only",
    r.allowed_cidrs.length ? r.allowed_cidrs.join(", ") : "any",
    time(r.created_at),
  ]);
  return h("section", {},
    h("h1", {}, "Registries"),
    canCreate ? await createRegistryForm(ctx) : null,
    table("Registries you can see", ["Name", "Type", "Description", "Access", "Listeners", "Clients", "Created"],
      rows, canCreate ? "No registries yet: create one to push images into it."
        : "You hold no role on any registry yet: ask a system administrator."));
}

// "normal", or the image cache a cache-type registry pulls through (linked for those who see caches).
function registryType(r, linked) {
  if (!r.cache) return "normal";
  return h("span", {}, badge("image cache", "info"), " ", linked ? link(cacheHref(r.cache), r.cache) : r.cache);
}

// The guide's "usage": a normal registry, or an image cache type one and the image cache it pulls through
// (chosen from the list for system administrators, who see image caches; named by others).
async function usageFields(ctx) {
  const usage = select([["normal", "Normal (push and pull images)"],
    ["image_cache", "Image cache (pull through a source registry; no pushes)"]], { name: "usage", value: "normal" });
  let cache;
  if (ctx.me.system_admin) {
    const { caches } = await get("/caches");
    cache = select([["", caches.length ? "Choose an image cache" : "No image caches yet: create one first"],
      ...caches.map((c) => [c.name, `${c.name} (${c.url})`])], { name: "cache" });
  } else {
    cache = h("input", { name: "cache", autocomplete: "off" });
  }
  const cacheField = field("Image cache", cache, "The source registry it pulls through. A cleanup policy deleting " +
    "what was not pulled within 7 days is added; you may add others.");
  cacheField.hidden = true;
  usage.addEventListener("change", () => {
    cacheField.hidden = usage.value !== "image_cache";
    cache.required = !cacheField.hidden;
  });
  return {
    nodes: [field("Usage", usage), cacheField],
    values: () => (usage.value === "image_cache" ? { cache: cache.value.trim() } : {}),
  };
}

async function createRegistryForm(ctx) {
  const name = h("input", { name: "name", required: true, pattern: "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*",
    maxlength: 64, autocomplete: "off" });
  const settings = settingsFields(null);
  const usage = await usageFields(ctx);
  const form = h("form", { class: "card", "aria-labelledby": "create-registry" },
    h("h2", { id: "create-registry" }, "Create a registry"),
    field("Registry name", name, "Lower-case letters and digits, separated by . _ __ or -."),
    usage.nodes,
    settings.nodes,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Create registry")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      const created = await post("/registries", { name: name.value.trim(), ...usage.values(), ...settings.values() });
      flash(`Registry ${created.name} created.`);
      ctx.go(registryHref(created.name));
    });
  });
  return h("details", { class: "panel" }, h("summary", {}, "Create a registry"), form);
}

const TABS = [["images", "Images"], ["tags", "Tags"], ["members", "Members"], ["webhooks", "Webhooks"],
  ["cleanup", "Cleanup"], ["protection", "Protection"], ["replication", "Replication"], ["trust", "Trust"],
  ["settings", "Settings"]];

export async function registryView(ctx) {
  const [name, tab = "images"] = ctx.params;
  const registry = await get(`/registries/${seg(name)}`);
  const tabs = h("nav", { class: "tabs", "aria-label": "Registry" }, h("ul", {}, TABS.map(([key, label]) =>
    h("li", {}, h("a", { href: registryHref(name, key), "aria-current": key === tab ? "page" : undefined }, label)))));
  const body = {
    images: imagesTab, tags: tagsTab, members: membersTab, webhooks: webhooksTab, cleanup: cleanupTab,
    protection: protectionTab, replication: replicationTab, trust: trustTab, settings: settingsTab,
  }[tab];
  return h("section", {},
    breadcrumbs([["#/registries", "Registries"]], name),
    h("h1", {}, `Registry ${name}`),
    h("p", { class: "summary" },
      registry.cache ? [registryType(registry, ctx.me.system_admin), " · "] : null,
      registry.public_read ? badge("public read", "info") : badge("private"), " ",
      `${registry.images} image${registry.images === 1 ? "" : "s"}`,
      registry.description ? ` · ${registry.description}` : ""),
    tabs,
    await body(ctx, registry));
}

export function breadcrumbs(trail, current) {
  return h("nav", { class: "breadcrumbs", "aria-label": "Breadcrumb" },
    h("ol", {}, trail.map(([href, label]) => h("li", {}, link(href, label))),
      h("li", {}, h("span", { "aria-current": "page" }, current))));
}

// -- images ---------------------------------------------------------------------------------------

async function imagesTab(ctx, registry) {
  const canManage = ctx.can("manage", registry.name);
  const results = h("div", { class: "results" });
  const search = h("input", { type: "search", name: "q", value: ctx.query.get("q") || "", autocomplete: "off" });
  let page = Number(ctx.query.get("page")) || 1;

  async function load() {
    const answer = await get(`/registries/${seg(registry.name)}/images`, { q: search.value.trim(), page });
    ctx.setQuery({ q: search.value.trim(), page });
    const rows = answer.images.map((image) => [
      link(imageHref(registry.name, image.name), image.name),
      String(image.artifacts),
      String(image.tags),
      bytes(image.size),
      time(image.pushed_at),
      time(image.pulled_at, "never"),
      canManage ? button("Delete", () => deleteImage(ctx, registry.name, image.name),
        { kind: "danger", "aria-label": `Delete image ${image.name}` }) : null,
    ].filter((cell) => cell !== null));
    const headers = ["Image", "Artifacts", "Tags", "Size", "Last push", "Last pull"];
    if (canManage) headers.push("Actions");
    replace(results,
      table(`Images of ${registry.name}`, headers, rows,
        search.value.trim() ? "No image matches." : "No images yet: push one to this registry."),
      pager(answer, (p) => { page = p; attempt(load); }, "images"));
  }

  const form = h("form", { role: "search", class: "inline", "aria-label": "Image search" },
    field("Search images", search), h("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    page = 1;
    attempt(load);
  });
  await load();
  return h("section", { "aria-labelledby": "images-title" }, h("h2", { id: "images-title" }, "Images"), form, results);
}

export async function deleteImage(ctx, registry, image, after) {
  const ok = await confirm(`Delete image ${registry}/${image}?`,
    `Every artifact and tag of ${registry}/${image} will be deleted. This cannot be undone.`, "Delete image");
  if (!ok) return;
  await attempt(async () => {
    const answer = await del(`/registries/${seg(registry)}/images/${imagePath(image)}`);
    const n = answer && answer.artifacts_deleted !== undefined ? answer.artifacts_deleted : "its";
    flash(`Image ${registry}/${image} deleted (${n} artifacts).`);
    if (after) ctx.go(after);
    else ctx.reload();
  });
}

// -- tags across the registry -----------------------------------------------------------------------

// A tag search form (contains or glob) over `path`, with its results; used for a registry and an image.
export async function tagSearch(ctx, { path, registry, showImage, title }) {
  const canManage = ctx.can("manage", registry);
  const results = h("div", { class: "results" });
  const initialGlob = ctx.query.get("glob");
  const text = h("input", { type: "search", name: "tag", value: initialGlob || ctx.query.get("tag") || "",
    autocomplete: "off" });
  const mode = select([["q", "contains"], ["glob", "glob pattern (*, **, ?, {a,b})"]],
    { name: "mode", value: initialGlob ? "glob" : "q" });
  let page = 1;

  async function load() {
    const value = text.value.trim();
    const query = { page };
    if (value) query[mode.value] = value;
    const answer = await get(path, query);
    ctx.setQuery(mode.value === "glob" ? { glob: value } : { tag: value });
    const rows = answer.tags.map((tag) => {
      const image = tag.repository.slice(registry.length + 1);
      const cells = [tag.name];
      if (showImage) cells.push(link(imageHref(registry, image), image));
      cells.push(link(artifactHref(registry, image, tag.digest), h("code", {}, shortDigest(tag.digest))),
        time(tag.updated_at));
      if (canManage) {
        cells.push(button("Delete", () => deleteTag(ctx, registry, image, tag.name),
          { kind: "danger", "aria-label": `Delete tag ${tag.name}` }));
      }
      return cells;
    });
    const headers = ["Tag"];
    if (showImage) headers.push("Image");
    headers.push("Artifact", "Updated");
    if (canManage) headers.push("Actions");
    replace(results, table(title, headers, rows, value ? "No tag matches." : "No tags."),
      pager(answer, (p) => { page = p; attempt(load); }, "tags"));
  }

  const form = h("form", { role: "search", class: "inline", "aria-label": "Tag search" },
    field("Search tags", text), field("Match", mode), h("button", { type: "submit" }, "Search tags"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    page = 1;
    attempt(load);
  });
  await load();
  return [form, results];
}

export async function deleteTag(ctx, registry, image, tag) {
  const ok = await confirm(`Delete tag ${tag}?`,
    `The tag ${registry}/${image}:${tag} will be removed; the artifact it points to stays.`, "Delete tag");
  if (!ok) return;
  await attempt(async () => {
    await del(`/registries/${seg(registry)}/images/${imagePath(image)}/tags/${seg(tag)}`);
    flash(`Tag ${tag} deleted.`);
    ctx.reload();
  });
}

async function tagsTab(ctx, registry) {
  const parts = await tagSearch(ctx, { path: `/registries/${seg(registry.name)}/tags`, registry: registry.name,
    showImage: true, title: `Tags in ${registry.name}` });
  return h("section", { "aria-labelledby": "tags-title" }, h("h2", { id: "tags-title" }, "Tags"), parts);
}

// -- members --------------------------------------------------------------------------------------

async function membersTab(ctx, registry) {
  const answer = await get(`/registries/${seg(registry.name)}/members`);
  const admin = ctx.me.system_admin;
  const rows = answer.members.map((m) => {
    const cells = [m.user, m.role];
    if (admin) {
      cells.push(button("Revoke", () => revokeRole(ctx, m.user, registry.name),
        { kind: "danger", "aria-label": `Revoke the role of ${m.user}` }));
    }
    return cells;
  });
  const headers = admin ? ["User", "Role", "Actions"] : ["User", "Role"];
  return h("section", { "aria-labelledby": "members-title" },
    h("h2", { id: "members-title" }, "Members"),
    table(`Roles on ${registry.name}`, headers, rows, "Nobody holds a role on this registry itself."),
    h("p", { class: "hint" }, "Roles granted on every registry (*) and system administrators are not listed."),
    admin ? await grantRoleForm(ctx, registry.name) : null);
}

async function grantRoleForm(ctx, registry) {
  const users = (await get("/users")).users;
  const user = select(users.map((u) => [u.name, u.name]), { name: "user", required: true });
  const role = select(ROLES.map((r) => [r, r]), { name: "role" });
  const form = h("form", { class: "card", "aria-labelledby": "grant-title" },
    h("h3", { id: "grant-title" }, "Grant a role"),
    field("User", user), field("Role", role),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Grant role")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      await put(`/users/${seg(user.value)}/roles/${seg(registry)}`, { role: role.value });
      flash(`${user.value} is now ${role.value} on ${registry}.`);
      ctx.reload();
    });
  });
  return form;
}

export async function revokeRole(ctx, user, registry) {
  const where = registry === "*" ? "every registry" : registry;
  const ok = await confirm(`Revoke ${user}'s role?`, `${user} loses their role on ${where}.`, "Revoke role");
  if (!ok) return;
  await attempt(async () => {
    await del(`/users/${seg(user)}/roles/${seg(registry)}`);
    flash(`${user}'s role on ${where} revoked.`);
    ctx.reload();
  });
}

// -- settings -------------------------------------------------------------------------------------

async function settingsTab(ctx, registry) {
  const summary = details([
    ["Name", registry.name],
    ["Type", registryType(registry, ctx.me.system_admin)],
    ["Description", registry.description || "-"],
    ["Public read", yesNo(registry.public_read)],
    ["Public URI", yesNo(registry.public_uri)],
    ["Allowed CIDR blocks", registry.allowed_cidrs.length ? registry.allowed_cidrs.join(", ") : "any client"],
    ["Created", time(registry.created_at)],
    ["Updated", time(registry.updated_at)],
  ]);
  if (!ctx.can("manage", registry.name)) {
    return h("section", { "aria-labelledby": "settings-title" }, h("h2", { id: "settings-title" }, "Settings"), summary,
      await registryScanSettings(ctx, registry.name), await registryTrustSettings(ctx, registry.name));
  }
  const settings = settingsFields(registry);
  const form = h("form", { class: "card", "aria-labelledby": "edit-title" },
    h("h3", { id: "edit-title" }, "Change settings"), settings.nodes,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Save settings")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      await patch(`/registries/${seg(registry.name)}`, settings.values());
      flash("Settings saved.");
      ctx.reload();
    });
  });
  const danger = h("section", { class: "card danger-zone", "aria-labelledby": "delete-title" },
    h("h3", { id: "delete-title" }, "Delete this registry"),
    h("p", {}, registry.images
      ? `It holds ${registry.images} image${registry.images === 1 ? "" : "s"}: deleting it deletes them too.`
      : "It holds no images."),
    button("Delete registry", async () => {
      const extra = registry.images ? checkbox(`Also delete its ${registry.images} images`, {}) : null;
      const ok = await confirm(`Delete registry ${registry.name}?`,
        "Its settings and roles are removed; this cannot be undone.", "Delete registry", extra);
      if (!ok) return;
      const forced = extra ? extra.querySelector("input").checked : false;
      await attempt(async () => {
        const answer = await del(`/registries/${seg(registry.name)}`, { force: forced ? "true" : undefined });
        flash(`Registry ${registry.name} deleted (${answer.images_deleted} images).`);
        ctx.go("#/registries");
      });
    }, { kind: "danger" }));
  return h("section", { "aria-labelledby": "settings-title" }, h("h2", { id: "settings-title" }, "Settings"),
    summary, form, await registryScanSettings(ctx, registry.name), await registryTrustSettings(ctx, registry.name),
    danger);
}
