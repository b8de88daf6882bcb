// Image caches (system administrators): the list, creating one, and a cache's page (change it, test the
// connection, delete it). The access secret is write-only: the API only says whether one is set, and so
// does the console. Cache-type registries are created on the Registries page.

import { del, get, patch, post, seg } from "../api.js";
import {
  attempt, badge, button, confirm, details, field, flash, h, link, orNone, replace, select, table, time, writeOnly,
} from "../dom.js";
import { breadcrumbs, registryHref } from "./registries.js";

// The guide's source types, with what their access ID and secret are.
export const SOURCE_TYPES = [
  ["ncr", "NHN Container Registry (NCR)"],
  ["ecr", "Amazon ECR"],
  ["acr", "Azure Container Registry"],
  ["gcr", "Google GCR / Artifact Registry"],
  ["dockerhub", "Docker Hub"],
  ["registry", "Docker Registry"],
  ["harbor", "Harbor"],
  ["quay", "Quay"],
];
const TYPE_NAMES = Object.fromEntries(SOURCE_TYPES);
const NAME_PATTERN = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";

export function cacheHref(name) {
  return `#/caches/${seg(name)}`;
}

function secretBadge(isSet) {
  return isSet ? badge("set", "ok") : badge("not set", "muted");
}

function registryLinks(names) {
  if (!names.length) return "none";
  return names.flatMap((name, i) => [i ? ", " : "", link(registryHref(name), name)]);
}

function cacheForm(current, submitLabel, onSubmit) {
  const name = current ? null : h("input", { name: "name", required: true, pattern: NAME_PATTERN, maxlength: 64,
    autocomplete: "off" });
  const type = select(SOURCE_TYPES, { name: "type", value: current ? current.type : "dockerhub" });
  const url = h("input", { name: "url", type: "url", required: true, autocomplete: "off", spellcheck: "false",
    placeholder: "https://registry-1.docker.io", value: current ? current.url : "" });
  const accessId = h("input", { name: "access_id", autocomplete: "off", spellcheck: "false",
    value: current ? current.access_id : "" });
  const secret = writeOnly("Access secret", "access_secret", current, current && current.has_secret,
    "The password or secret (Quay: the JSON with account_name and docker_cli_password; GCR: the service " +
    "account's JSON key). Never shown again.");
  const endpoint = h("input", { name: "endpoint", type: "url", autocomplete: "off", spellcheck: "false",
    value: current ? current.endpoint : "" });
  const description = h("input", { name: "description", value: current ? current.description : "" });
  const form = h("form", { class: "card", "aria-label": submitLabel },
    name ? field("Image cache name", name, "Lower-case letters and digits, separated by . _ __ or -.") : null,
    field("Source type", type),
    field("Source URL", url, "scheme://host[:port], without a path; the port is 80 or 443."),
    field("Access ID", accessId, "User name or access key ID (GCR: _json_key); empty for anonymous pulls."),
    secret.nodes,
    field("ECR API endpoint", endpoint, "ECR only, optional: where GetAuthorizationToken is called."),
    field("Description", description),
    h("div", { class: "actions" }, h("button", { type: "submit" }, submitLabel)));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = { type: type.value, url: url.value.trim(), access_id: accessId.value.trim(),
      endpoint: endpoint.value.trim(), description: description.value };
    if (name) body.name = name.value.trim();
    const value = secret.value();
    if (value !== undefined) body.access_secret = value;
    attempt(async () => {
      await onSubmit(body);
      secret.clear();
    });
  });
  return form;
}

function testResultCard(name, result) {
  return h("section", { class: "card", "aria-labelledby": "cache-test-title" },
    h("h3", { id: "cache-test-title" }, `Test of ${name}: ${result.ok ? "ok" : "failed"}`),
    h("p", {}, result.detail));
}

function testButton(name, into) {
  return button("Test connection", () => attempt(async () => {
    replace(into, h("p", {}, `Testing ${name}...`));
    replace(into, testResultCard(name, await post(`/caches/${seg(name)}/test`)));
  }), { "aria-label": `Test image cache ${name}` });
}

async function deleteCache(ctx, cache, after) {
  const ok = await confirm(`Delete image cache ${cache.name}?`,
    "Registries pulling through it must be deleted first.", "Delete image cache");
  if (!ok) return;
  await attempt(async () => {
    await del(`/caches/${seg(cache.name)}`);
    flash(`Image cache ${cache.name} deleted.`);
    if (after) await after();
    else ctx.go("#/caches");
  });
}

export async function cachesView(ctx) {
  const results = h("div", { class: "results" });
  const testResult = h("div", { class: "results", "aria-live": "polite" });

  async function load() {
    const answer = await get("/caches");
    const rows = answer.caches.map((cache) => [
      link(cacheHref(cache.name), cache.name),
      TYPE_NAMES[cache.type] || cache.type,
      h("code", { class: "url" }, cache.url),
      orNone(cache.access_id),
      secretBadge(cache.has_secret),
      registryLinks(cache.registries),
      time(cache.created_at),
      h("span", { class: "row-actions" },
        h("a", { href: cacheHref(cache.name), "aria-label": `Change image cache ${cache.name}` }, "Change"), " ",
        testButton(cache.name, testResult), " ",
        button("Delete", () => deleteCache(ctx, cache, load),
          { kind: "danger", "aria-label": `Delete image cache ${cache.name}` })),
    ]);
    replace(results, table("Image caches",
      ["Name", "Type", "Source URL", "Access ID", "Secret", "Registries", "Created", "Actions"], rows,
      "No image caches yet: create one, then a registry of the image cache type that pulls through it."));
  }

  const form = cacheForm(null, "Create image cache", async (body) => {
    const created = await post("/caches", body);
    flash(`Image cache ${created.name} created.`);
    ctx.go(cacheHref(created.name));
  });
  await load();
  return h("section", {},
    h("h1", {}, "Image caches"),
    h("p", { class: "hint" }, "An image cache is a source registry. A registry of the image cache type pulls ",
      "images through it: <registry>/<path at the source>:<tag> (official images under library/). ",
      "See docs/cache.md."),
    h("details", { class: "panel" }, h("summary", {}, "Create an image cache"), form),
    testResult, results);
}

export async function cacheView(ctx) {
  const [name] = ctx.params;
  const cache = await get(`/caches/${seg(name)}`);
  const testResult = h("div", { class: "results", "aria-live": "polite" });
  const edit = h("details", { class: "panel" }, h("summary", {}, "Change this image cache"),
    cacheForm(cache, "Save image cache", async (body) => {
      const changed = await patch(`/caches/${seg(name)}`, body);
      flash(`Image cache ${changed.name} saved.`);
      ctx.reload();
    }));
  return h("section", {},
    breadcrumbs([["#/caches", "Image caches"]], cache.name),
    h("h1", {}, `Image cache ${cache.name}`),
    details([
      ["Type", TYPE_NAMES[cache.type] || cache.type],
      ["Source URL", h("code", { class: "url" }, cache.url)],
      ["Access ID", orNone(cache.access_id)],
      ["Access secret", secretBadge(cache.has_secret)],
      ["ECR API endpoint", orNone(cache.endpoint)],
      ["Description", orNone(cache.description)],
      ["Registries", registryLinks(cache.registries)],
      ["Created", time(cache.created_at)],
      ["Updated", time(cache.updated_at)],
    ]),
    h("div", { class: "actions" }, testButton(cache.name, testResult),
      button("Delete image cache", () => deleteCache(ctx, cache), { kind: "danger" })),
    testResult, edit);
}
