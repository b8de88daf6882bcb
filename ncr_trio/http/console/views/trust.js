// Image trust (docs/trust.md): an artifact's Signed badge, its signatures and accessories, a registry's
// signature requirements (a card beside its scan settings), the keys a registry trusts (its Trust tab)
// and the keys the whole installation trusts (system administrators). Every value is text (h()).

import { del, get, patch, post, seg } from "../api.js";
import {
  NONE, attempt, badge, button, bytes, checkbox, confirm, details, field, flash, h, link, shortDigest, table, time,
} from "../dom.js";
import { breadcrumbs } from "./registries.js";

const STATE_KINDS = { verified: "ok", signed: "info", invalid: "danger", unsigned: "muted" };

// "verified (release, ops)", "signed (2)", "unsigned", "invalid"; none for an accessory itself.
export function signedBadge(artifact) {
  const s = artifact.signed;
  if (!s) return NONE;
  let label = s.state;
  if (s.state === "signed") label = `signed (${s.signatures})`;
  if (s.state === "verified") {
    const names = s.key_names.length ? s.key_names : s.keys.map((k) => shortDigest(k));
    label = `verified (${names.join(", ")})`;
  }
  return badge(label, `trust-${STATE_KINDS[s.state] || "muted"}`);
}

const VERDICT_KINDS = { verified: "ok", unverified: "info", invalid: "danger" };

// An artifact's signatures: layout, verdict, the keys that verify each, and why not.
export async function signaturesSection(imageApi, digest) {
  const report = await get(`${imageApi}/artifacts/${seg(digest)}/signatures`);
  const rows = report.signatures.map((s) => [
    s.layout,
    h("code", { title: s.manifest }, shortDigest(s.manifest)),
    badge(s.verdict, `trust-${VERDICT_KINDS[s.verdict] || "muted"}`),
    s.key_names.length ? s.key_names.join(", ") : (s.keys.length ? s.keys.map(shortDigest).join(", ") : NONE),
    s.reason || NONE,
  ]);
  return h("section", { "aria-labelledby": "signatures-title" },
    h("h2", { id: "signatures-title" }, "Signatures"),
    table(`Signatures of ${shortDigest(digest)}`, ["Layout", "Signature manifest", "Verdict", "Keys", "Reason"], rows,
      "No cosign signatures."));
}

// An artifact's accessories, read-only: they go when the artifact is deleted.
export function accessoriesSection(artifactHref, artifact) {
  const rows = (artifact.accessories || []).map((x) => [
    link(artifactHref(x.digest), h("code", { title: x.digest }, shortDigest(x.digest))),
    x.type,
    x.tag ? badge(x.tag, "tag") : NONE,
    x.artifact_type ? h("code", {}, x.artifact_type) : NONE,
    bytes(x.size),
    time(x.pushed_at),
  ]);
  return h("section", { "aria-labelledby": "accessories-title" },
    h("h2", { id: "accessories-title" }, "Accessories"),
    h("p", { class: "hint" }, "Signatures, attestations, SBOMs and other referrers of this artifact. They are deleted " +
      "with it, and cannot be deleted on their own."),
    table(`Accessories of ${shortDigest(artifact.digest)}`, ["Digest", "Type", "Tag", "Artifact type", "Size", "Pushed"],
      rows, "No accessories."));
}

// A registry's signature requirements (managers change them), beside its scan settings.
export async function registryTrustSettings(ctx, registry) {
  const path = `/registries/${seg(registry)}/trust`;
  const s = await get(path);
  const section = h("section", { "aria-labelledby": "trust-settings-title" },
    h("h2", { id: "trust-settings-title" }, "Image trust"),
    details([
      ["Require a signature", s.require_signature ? "yes" : "no"],
      ["Require a verified signature", s.require_verified_signature ? "yes" : "no"],
      ["Trusted keys", link(`#/registries/${seg(registry)}/trust`, "The registry's trusted keys")],
    ]));
  if (!ctx.can("manage", registry)) return section;
  const form = h("form", { class: "card", "aria-label": "Trust settings" },
    h("h3", {}, "Change trust settings"),
    checkbox("Require a cosign signature (pulls of unsigned images get 412)",
      { name: "require_signature", checked: s.require_signature }),
    checkbox("Require a signature verified by a trusted key", { name: "require_verified_signature",
      checked: s.require_verified_signature }),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Save trust settings")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      await patch(path, { require_signature: form.querySelector("input[name=require_signature]").checked,
        require_verified_signature: form.querySelector("input[name=require_verified_signature]").checked });
      flash(`Trust settings of ${registry} saved.`);
      ctx.reload();
    });
  });
  section.append(form);
  return section;
}

// The keys of one scope: a registry's (keysApi under it) or the installation's.
async function keysSection(ctx, keysApi, scope, canManage) {
  const { keys } = await get(keysApi);
  const rows = keys.map((k) => {
    const cells = [k.name, h("code", { title: k.id }, shortDigest(k.id)), k.algorithm, time(k.created_at)];
    if (canManage) {
      cells.push(button("Delete", () => deleteKey(ctx, keysApi, scope, k.name),
        { kind: "danger", "aria-label": `Delete key ${k.name}` }));
    }
    return cells;
  });
  const headers = ["Name", "ID", "Algorithm", "Added"];
  if (canManage) headers.push("Actions");
  let form = null;
  if (canManage) {
    const name = h("input", { name: "name", required: true, maxlength: 64, pattern: "[A-Za-z0-9][A-Za-z0-9._\\-]{0,63}",
      autocomplete: "off" });
    const pem = h("textarea", { name: "pem", rows: 6, required: true, spellcheck: "false",
      placeholder: "-----BEGIN PUBLIC KEY-----" });
    form = h("form", { class: "card", "aria-labelledby": "add-key-title" },
      h("h3", { id: "add-key-title" }, "Trust a key"),
      field("Name", name), field("Public key (PEM)", pem, "the content of cosign.pub; private keys are refused"),
      h("div", { class: "actions" }, h("button", { type: "submit" }, "Add key")));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      attempt(async () => {
        const added = await post(keysApi, { name: name.value.trim(), pem: pem.value });
        flash(`${scope} now trusts key ${added.name} (${added.algorithm}).`);
        ctx.reload();
      });
    });
  }
  return [table(`Keys ${scope} trusts`, headers, rows, "No trusted keys."), form];
}

async function deleteKey(ctx, keysApi, scope, name) {
  const ok = await confirm(`Stop trusting key ${name}?`,
    `Signatures made with it no longer count as verified in ${scope}; images that need a verified signature ` +
    "may be refused at pull.", "Delete key");
  if (!ok) return;
  await attempt(async () => {
    await del(`${keysApi}/${seg(name)}`);
    flash(`Key ${name} deleted.`);
    ctx.reload();
  });
}

// A registry's Trust tab: its keys (the installation's apply too). The API lists them to managers only.
export async function trustTab(ctx, registry) {
  const name = registry.name;
  const intro = h("p", {}, "Images of this registry are checked against these cosign public keys and the " +
    "installation's.");
  const parts = ctx.can("manage", name)
    ? await keysSection(ctx, `/registries/${seg(name)}/trust/keys`, `Registry ${name}`, true)
    : [h("p", { class: "empty" }, "Only the registry's managers see and change its trusted keys.")];
  return h("section", { "aria-labelledby": "trust-title" },
    h("h2", { id: "trust-title" }, "Trusted keys"), intro, ...parts);
}

// The keys every registry trusts (system administrators).
export async function trustKeysView(ctx) {
  const parts = await keysSection(ctx, "/trust/keys", "Every registry", true);
  return h("section", {},
    breadcrumbs([], "Trusted keys"),
    h("h1", {}, "Trusted keys"),
    h("p", {}, "Cosign public keys every registry trusts (each registry may trust more in its Trust tab)."),
    ...parts);
}
