// A registry's webhooks: the list, creating one, and a webhook's page (change it, enable or disable it,
// send a test, its delivery history). The secret and the auth header are write-only: the API only
// says whether they are set, and so does the console.

import { del, get, patch, post, seg } from "../api.js";
import {
  NONE, attempt, badge, button, checkbox, confirm, details, field, flash, h, link, orNone, pager, replace, select,
  table, time, writeOnly,
} from "../dom.js";
import { breadcrumbs, registryHref } from "./registries.js";

export const EVENT_TYPES = [
  ["artifact.pushed", "Artifact pushed"],
  ["artifact.cached", "Artifact cached (image cache)"],
  ["artifact.pulled", "Artifact pulled"],
  ["artifact.deleted", "Artifact deleted"],
  ["tag.created", "Tag created"],
  ["tag.deleted", "Tag deleted"],
  ["replication.started", "Replication started"],
  ["replication.finished", "Replication finished"],
  ["replication.failed", "Replication failed"],
  ["scan.completed", "Scan completed"],
  ["scan.failed", "Scan failed"],
  ["signature.pushed", "Signature pushed"],
  ["signature.invalid", "Signature invalid"],
];

const KINDS = [["http", "HTTP (JSON payload)"], ["slack", "Slack (incoming webhook)"]];

export function webhookHref(registry, id) {
  return `${registryHref(registry, "webhooks")}/${seg(String(id))}`;
}

function hooksApi(registry) {
  return `/registries/${seg(registry)}/webhooks`;
}

function eventsText(types) {
  return types && types.length ? types.join(", ") : "every type";
}

function setBadge(isSet) {
  return isSet ? badge("set", "ok") : badge("not set", "muted");
}

function enabledBadge(enabled) {
  return enabled ? badge("enabled", "ok") : badge("disabled", "muted");
}

// An on/off switch for something's `enabled`; `change(enabled)` saves it (and reloads on success).
export function enabledSwitch(label, enabled, change) {
  const input = h("input", { type: "checkbox", role: "switch", checked: enabled, "aria-label": label });
  input.addEventListener("change", async () => {
    input.disabled = true;
    const saved = await attempt(async () => {
      await change(input.checked);
      return true;
    });
    if (!saved) input.checked = !input.checked;
    input.disabled = false;
  });
  return h("label", { class: "switch" }, input, " ", enabled ? "enabled" : "disabled");
}

const DELIVERY_STATUS = { delivered: "ok", failed: "danger", pending: "warn" };

function statusBadge(status) {
  return badge(status, DELIVERY_STATUS[status]);
}

// -- the create / change form -------------------------------------------------------------------------

function webhookForm(current, submitLabel, onSubmit) {
  const name = h("input", { name: "name", required: true, maxlength: 64, pattern: "[A-Za-z0-9._\\-]{1,64}",
    autocomplete: "off", value: current ? current.name : "" });
  const kind = select(KINDS, { name: "kind", value: current ? current.kind : "http" });
  const url = h("input", { name: "url", type: "url", required: true, autocomplete: "off", spellcheck: "false",
    placeholder: "https://hooks.example.com/ncr", value: current ? current.url : "" });
  const chosen = new Set(current ? current.event_types : []);
  const events = EVENT_TYPES.map(([type, label]) =>
    checkbox(`${label} (${type})`, { name: "event_types", value: type, checked: chosen.has(type) }));
  const secret = writeOnly("Secret", "secret", current, current && current.secret_set,
    "Optional: signs every delivery (X-NCR-Signature: HMAC-SHA256 of the body). Never shown again.");
  const auth = writeOnly("Authorization header", "auth_header", current, current && current.auth_header_set,
    "Optional: sent as the Authorization header of every delivery. Never shown again.");
  const enabled = current ? null : checkbox("Enabled", { name: "enabled", checked: true });
  const form = h("form", { class: "card", "aria-label": submitLabel },
    field("Webhook name", name, "Letters, digits, . _ -; unique in the registry."),
    field("Kind", kind),
    field("URL", url, "Put credentials in the secret or the authorization header, never in the URL: " +
      "every user who may read the registry sees it."),
    h("fieldset", { class: "checks" }, h("legend", {}, "Event types"),
      h("p", { class: "field-hint" }, "None checked: every type."), events),
    secret.nodes, auth.nodes, enabled,
    h("div", { class: "actions" }, h("button", { type: "submit" }, submitLabel)));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = {
      name: name.value.trim(),
      kind: kind.value,
      url: url.value.trim(),
      event_types: events.map((e) => e.querySelector("input")).filter((i) => i.checked).map((i) => i.value),
    };
    if (enabled) body.enabled = enabled.querySelector("input").checked;
    for (const [key, part] of [["secret", secret], ["auth_header", auth]]) {
      const value = part.value();
      if (value !== undefined) body[key] = value;
    }
    attempt(async () => {
      await onSubmit(body);
      secret.clear();
      auth.clear();
    });
  });
  return form;
}

// -- the list --------------------------------------------------------------------------------------------

export async function webhooksTab(ctx, registry) {
  const name = registry.name;
  const canManage = ctx.can("manage", name);
  const results = h("div", { class: "results" });
  const testResult = h("div", { class: "results", "aria-live": "polite" });
  let page = 1;

  async function load() {
    const answer = await get(hooksApi(name), { page });
    const rows = answer.webhooks.map((hook) => {
      const cells = [
        link(webhookHref(name, hook.id), hook.name),
        hook.kind,
        h("code", { class: "url" }, hook.url),
        eventsText(hook.event_types),
        setBadge(hook.secret_set),
        setBadge(hook.auth_header_set),
        canManage
          ? enabledSwitch(`Enable webhook ${hook.name}`, hook.enabled, async (on) => {
            await patch(`${hooksApi(name)}/${hook.id}`, { enabled: on });
            flash(`Webhook ${hook.name} ${on ? "enabled" : "disabled"}.`);
            await load();
          })
          : enabledBadge(hook.enabled),
        time(hook.created_at),
      ];
      if (canManage) {
        cells.push(h("span", { class: "row-actions" },
          h("a", { href: webhookHref(name, hook.id), "aria-label": `Change webhook ${hook.name}` }, "Change"),
          " ",
          button("Send test", () => attempt(async () => {
            const delivery = await post(`${hooksApi(name)}/${hook.id}/test`);
            replace(testResult, testResultCard(hook, delivery));
          }), { "aria-label": `Send a test to webhook ${hook.name}` }),
          " ",
          button("Delete", () => deleteWebhook(ctx, name, hook, load),
            { kind: "danger", "aria-label": `Delete webhook ${hook.name}` })));
      }
      return cells;
    });
    const headers = ["Name", "Kind", "URL", "Events", "Secret", "Auth header", "Enabled", "Created"];
    if (canManage) headers.push("Actions");
    replace(results,
      table(`Webhooks of ${name}`, headers, rows,
        canManage ? "No webhooks yet: create one to be told about pushes, pulls and deletions."
          : "This registry has no webhooks."),
      pager(answer, (p) => { page = p; attempt(load); }, "webhooks"));
  }

  let create = null;
  if (canManage) {
    const form = webhookForm(null, "Create webhook", async (body) => {
      const hook = await post(hooksApi(name), body);
      flash(`Webhook ${hook.name} created.`);
      ctx.go(webhookHref(name, hook.id));
    });
    create = h("details", { class: "panel" }, h("summary", {}, "Create a webhook"), form);
  }
  await load();
  return h("section", { "aria-labelledby": "webhooks-title" },
    h("h2", { id: "webhooks-title" }, "Webhooks"),
    h("p", { class: "hint" }, "Webhooks are told about this registry's pushes, pulls, deletions and tags ",
      "(see docs/webhooks.md for the payload and its signature)."),
    create, testResult, results);
}

async function deleteWebhook(ctx, registry, hook, after) {
  const ok = await confirm(`Delete webhook ${hook.name}?`,
    "Its queued deliveries and its delivery history are deleted with it.", "Delete webhook");
  if (!ok) return;
  await attempt(async () => {
    await del(`${hooksApi(registry)}/${hook.id}`);
    flash(`Webhook ${hook.name} deleted.`);
    if (after) await after();
    else ctx.go(registryHref(registry, "webhooks"));
  });
}

// How deliveries went in detail (HTTP status, error, timing) is told to system administrators only.
const detailed = (delivery) => delivery.last_status !== undefined;

function testResultCard(hook, delivery) {
  const log = delivery.attempt_log || [];
  const last = log.length ? log[log.length - 1] : {};
  const facts = [["Status", statusBadge(delivery.status)]];
  if (detailed(delivery)) {
    facts.push(
      ["HTTP status", delivery.last_status === null ? "no answer" : String(delivery.last_status)],
      ["Error", orNone(delivery.last_error)],
      ["Duration", last.duration_ms === undefined || last.duration_ms === null ? NONE : `${last.duration_ms} ms`]);
  }
  facts.push(["Delivery", `#${delivery.id}`]);
  return h("section", { class: "card", "aria-labelledby": "test-result-title" },
    h("h3", { id: "test-result-title" }, `Test of ${hook.name}: ${delivery.status}`),
    details(facts));
}

// -- one webhook -----------------------------------------------------------------------------------------

function attemptList(delivery) {
  const log = delivery.attempt_log || [];
  if (log.length === 0) return String(delivery.attempts);
  return h("details", { class: "attempts" },
    h("summary", {}, `${delivery.attempts} attempt${delivery.attempts === 1 ? "" : "s"}`),
    h("ol", {}, log.map((a) => h("li", {}, ...(a.at === undefined ? [a.ok ? "delivered" : "failed"] : [
      time(a.at), " · ", a.status === null ? "no answer" : `HTTP ${a.status}`,
      a.duration_ms === null || a.duration_ms === undefined ? "" : ` · ${a.duration_ms} ms`,
      a.error ? ` · ${a.error}` : ""])))),
    h("pre", { class: "payload", "aria-label": "Payload" }, JSON.stringify(delivery.payload, null, 2)));
}

function statusCodes(delivery) {
  const log = delivery.attempt_log || [];
  if (!detailed(delivery)) return NONE;
  if (log.length === 0) return orNone(delivery.last_status);
  return log.map((a) => (a.status === null ? "none" : String(a.status))).join(", ");
}

export async function webhookView(ctx) {
  const [registry, id] = ctx.params;
  const hook = await get(`${hooksApi(registry)}/${seg(id)}`);
  const canManage = ctx.can("manage", registry);
  const history = h("div", { class: "results" });
  const testResult = h("div", { class: "results", "aria-live": "polite" });
  let page = 1;

  async function loadHistory() {
    const answer = await get(`${hooksApi(registry)}/${hook.id}/deliveries`, { page });
    const rows = answer.deliveries.map((d) => [
      `#${d.id}`,
      d.event_type,
      statusBadge(d.status),
      statusCodes(d),
      orNone(d.last_error),
      time(d.created_at),
      d.status === "pending" ? h("span", {}, "next try ", time(d.next_attempt_at)) : time(d.finished_at),
      attemptList(d),
    ]);
    replace(history,
      table(`Deliveries of ${hook.name}, newest first`,
        ["Delivery", "Event", "Status", "HTTP status", "Error", "Created", "Finished", "Attempts"], rows,
        "No deliveries yet."),
      pager(answer, (p) => { page = p; attempt(loadHistory); }, "deliveries"));
  }
  await loadHistory();

  let controls = null;
  let edit = null;
  if (canManage) {
    controls = h("div", { class: "actions" },
      enabledSwitch(`Enable webhook ${hook.name}`, hook.enabled, async (on) => {
        await patch(`${hooksApi(registry)}/${hook.id}`, { enabled: on });
        flash(`Webhook ${hook.name} ${on ? "enabled" : "disabled"}.`);
        ctx.reload();
      }),
      button("Send test", () => attempt(async () => {
        replace(testResult, h("p", {}, "Sending a test event..."));
        const delivery = await post(`${hooksApi(registry)}/${hook.id}/test`);
        replace(testResult, testResultCard(hook, delivery));
        page = 1;
        await loadHistory();
      })),
      button("Delete webhook", () => deleteWebhook(ctx, registry, hook), { kind: "danger" }));
    edit = h("details", { class: "panel" }, h("summary", {}, "Change this webhook"),
      webhookForm(hook, "Save webhook", async (body) => {
        const changed = await patch(`${hooksApi(registry)}/${hook.id}`, body);
        flash(`Webhook ${changed.name} saved.`);
        ctx.reload();
      }));
  }
  return h("section", {},
    breadcrumbs([["#/registries", "Registries"], [registryHref(registry), registry],
      [registryHref(registry, "webhooks"), "Webhooks"]], hook.name),
    h("h1", {}, `Webhook ${hook.name}`),
    details([
      ["Registry", link(registryHref(registry, "webhooks"), registry)],
      ["Kind", hook.kind],
      ["URL", h("code", { class: "url" }, hook.url)],
      ["Event types", eventsText(hook.event_types)],
      ["Enabled", enabledBadge(hook.enabled)],
      ["Secret", setBadge(hook.secret_set)],
      ["Authorization header", setBadge(hook.auth_header_set)],
      ["Created", time(hook.created_at)],
    ]),
    controls, testResult, edit,
    h("section", { "aria-labelledby": "deliveries-title" },
      h("h2", { id: "deliveries-title" }, "Delivery history"), history));
}
