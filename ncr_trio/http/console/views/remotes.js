// Remote registries for replication (system administrators): the list with each one's status, creating
// one, and a remote's page (change it, refresh its status, delete it). Like an image cache's access secret,
// a remote's is write-only: the API only says whether one is set, and so does the console. Every
// replication policy using a remote shares its status (docs/replication.md).

import { del, get, patch, post, seg } from "../api.js";
import {
  attempt, badge, button, checkbox, confirm, details, field, flash, h, link, orNone, replace, select, table, time,
  writeOnly, yesNo,
} from "../dom.js";
import { breadcrumbs } from "./registries.js";

// The types a remote may be (cache/sources.py); "ncr" is another ncr-trio, the default.
export const REMOTE_TYPES = [
  ["ncr", "ncr-trio (another instance)"],
  ["registry", "Docker Registry (CNCF Distribution)"],
  ["harbor", "Harbor"],
  ["quay", "Quay"],
  ["dockerhub", "Docker Hub"],
  ["ecr", "Amazon ECR"],
  ["acr", "Azure Container Registry"],
  ["gcr", "Google GCR / Artifact Registry"],
];
const TYPE_NAMES = Object.fromEntries(REMOTE_TYPES);
const NAME_PATTERN = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";

export function remoteHref(name) {
  return `#/remotes/${seg(name)}`;
}

// "valid", or "invalid" with the reason beside it (a remote's and a replication policy's status).
export function validity(status, reason) {
  if (status === "valid") return badge("valid", "ok");
  return h("span", { class: "validity" }, badge(status || "invalid", "danger"),
    reason ? h("span", { class: "reason" }, " ", reason) : null);
}

function secretBadge(isSet) {
  return isSet ? badge("set", "ok") : badge("not set", "muted");
}

function remoteForm(current, submitLabel, onSubmit) {
  const name = current ? null : h("input", { name: "name", required: true, pattern: NAME_PATTERN, maxlength: 64,
    autocomplete: "off" });
  const type = select(REMOTE_TYPES, { name: "type", value: current ? current.type : "ncr" });
  const url = h("input", { name: "url", type: "url", required: true, autocomplete: "off", spellcheck: "false",
    placeholder: "https://ncr.example.com", value: current ? current.url : "" });
  const accessId = h("input", { name: "access_id", autocomplete: "off", spellcheck: "false",
    value: current ? current.access_id : "" });
  const secret = writeOnly("Access secret", "access_secret", current, current && current.has_secret,
    "The access key's secret (or the password). Never shown again.");
  const caCert = h("textarea", { name: "ca_cert", rows: 4, spellcheck: "false", autocomplete: "off",
    placeholder: "-----BEGIN CERTIFICATE-----" });
  caCert.value = current ? current.ca_cert : "";
  const insecure = checkbox("Skip TLS verification (insecure)", { name: "insecure",
    checked: current ? current.insecure : false });
  const description = h("input", { name: "description", value: current ? current.description : "" });
  const form = h("form", { class: "card", "aria-label": submitLabel },
    name ? field("Remote name", name, "Lower-case letters and digits, separated by . _ __ or -.") : null,
    field("Remote type", type),
    field("Remote URL", url, "scheme://host[:port], without a path; its address must be in the server's " +
      "replication_allowed_networks."),
    field("Access ID", accessId, "For another ncr-trio: an access key ID of a user with the roles the policies " +
      "need there. Empty for anonymous access."),
    secret.nodes,
    field("CA certificate", caCert, "Optional PEM certificates to trust for the remote's TLS, beside the system's."),
    insecure,
    field("Description", description),
    h("div", { class: "actions" }, h("button", { type: "submit" }, submitLabel)));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = { type: type.value, url: url.value.trim(), access_id: accessId.value.trim(),
      ca_cert: caCert.value.trim(), insecure: insecure.querySelector("input").checked,
      description: description.value };
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

function refreshButton(remote, after) {
  return button("Refresh", () => attempt(async () => {
    const checked = await post(`/remotes/${seg(remote.name)}/refresh`);
    flash(`Remote ${checked.name} checked: ${checked.status}${checked.reason ? ` (${checked.reason})` : ""}.`);
    await after();
  }), { "aria-label": `Refresh remote ${remote.name}` });
}

async function deleteRemote(ctx, remote, after) {
  const ok = await confirm(`Delete remote ${remote.name}?`,
    "Replication policies using it must be deleted first. What was replicated stays where it is.", "Delete remote");
  if (!ok) return;
  await attempt(async () => {
    await del(`/remotes/${seg(remote.name)}`);
    flash(`Remote ${remote.name} deleted.`);
    if (after) await after();
    else ctx.go("#/remotes");
  });
}

export async function remotesView(ctx) {
  const results = h("div", { class: "results" });

  async function load() {
    const answer = await get("/remotes");
    const rows = answer.remotes.map((remote) => [
      link(remoteHref(remote.name), remote.name),
      TYPE_NAMES[remote.type] || remote.type,
      h("code", { class: "url" }, remote.url),
      orNone(remote.access_id),
      secretBadge(remote.has_secret),
      validity(remote.status, remote.reason),
      time(remote.checked_at, "never"),
      h("span", { class: "row-actions" },
        h("a", { href: remoteHref(remote.name), "aria-label": `Change remote ${remote.name}` }, "Change"), " ",
        refreshButton(remote, load), " ",
        button("Delete", () => deleteRemote(ctx, remote, load),
          { kind: "danger", "aria-label": `Delete remote ${remote.name}` })),
    ]);
    replace(results, table("Remote registries",
      ["Name", "Type", "URL", "Access ID", "Secret", "Status", "Checked", "Actions"], rows,
      "No remotes yet: create one, then a replication policy on a registry's Replication tab."));
  }

  const form = remoteForm(null, "Create remote", async (body) => {
    const created = await post("/remotes", body);
    flash(`Remote ${created.name} created: ${created.status}${created.reason ? ` (${created.reason})` : ""}.`);
    ctx.go(remoteHref(created.name));
  });
  await load();
  return h("section", {},
    h("h1", {}, "Remote registries"),
    h("p", { class: "hint" }, "A remote is another registry (another ncr-trio, or any OCI registry) that ",
      "replication policies push images to or pull images from. It is checked when saved, on Refresh and ",
      "periodically; a policy shares its remote's status. See docs/replication.md."),
    h("details", { class: "panel" }, h("summary", {}, "Create a remote"), form),
    results);
}

export async function remoteView(ctx) {
  const [name] = ctx.params;
  const remote = await get(`/remotes/${seg(name)}`);
  const edit = h("details", { class: "panel" }, h("summary", {}, "Change this remote"),
    remoteForm(remote, "Save remote", async (body) => {
      const changed = await patch(`/remotes/${seg(name)}`, body);
      flash(`Remote ${changed.name} saved: ${changed.status}${changed.reason ? ` (${changed.reason})` : ""}.`);
      ctx.reload();
    }));
  return h("section", {},
    breadcrumbs([["#/remotes", "Remote registries"]], remote.name),
    h("h1", {}, `Remote ${remote.name}`),
    details([
      ["Status", validity(remote.status, remote.reason)],
      ["Checked", time(remote.checked_at, "never")],
      ["Type", TYPE_NAMES[remote.type] || remote.type],
      ["URL", h("code", { class: "url" }, remote.url)],
      ["Access ID", orNone(remote.access_id)],
      ["Access secret", secretBadge(remote.has_secret)],
      ["CA certificate", remote.ca_cert ? "set" : "none (the system's trust)"],
      ["Skip TLS verification", yesNo(remote.insecure)],
      ["Description", orNone(remote.description)],
      ["Created", time(remote.created_at)],
      ["Updated", time(remote.updated_at)],
    ]),
    h("div", { class: "actions" }, refreshButton(remote, async () => ctx.reload()),
      button("Delete remote", () => deleteRemote(ctx, remote), { kind: "danger" })),
    edit);
}
