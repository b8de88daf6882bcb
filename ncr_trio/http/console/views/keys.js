// Access keys: the current user's (or, for an administrator, any user's).

import { del, get, post, seg } from "../api.js";
import { attempt, badge, button, checkbox, confirm, dialog, field, flash, h, replace, table, time } from "../dom.js";

export async function keysView(ctx) {
  return h("section", {},
    h("h1", {}, "Access keys"),
    h("p", {}, "Log in to the registry with an access key: its ID is the user name, its secret the password ",
      "(for example ", h("code", {}, `docker login ${window.location.host} -u <key ID>`), "). ",
      "A user holds at most 5 active keys; rotate keys older than 90 days."),
    await keysPanel(ctx, "me", ctx.me.user));
}

// The keys of `user` ("me" or a name): list, create (the secret shown once), revoke.
export async function keysPanel(ctx, user, displayName) {
  const results = h("div", { class: "results" });
  const showRevoked = checkbox("Show revoked keys", { name: "revoked", on: { change: () => attempt(load) } });

  async function load() {
    const revoked = showRevoked.querySelector("input").checked;
    const answer = await get(`/users/${seg(user)}/keys`, { revoked: revoked ? "true" : undefined });
    const rows = answer.keys.map((k) => {
      const status = k.revoked_at
        ? badge("revoked", "muted")
        : k.rotation_due ? badge("rotation due", "warn") : badge("active", "ok");
      const current = ctx.me.key_id === k.id;
      return [
        h("code", {}, k.id),
        k.description || "",
        time(k.created_at),
        time(k.last_used_at, "never"),
        h("span", {}, status, current ? " (this session)" : ""),
        k.revoked_at ? time(k.revoked_at)
          : button("Revoke", () => revokeKey(ctx, user, k, current, load),
            { kind: "danger", "aria-label": `Revoke key ${k.id}` }),
      ];
    });
    replace(results, table(`Access keys of ${displayName}`,
      ["Key ID", "Description", "Created", "Last used", "Status", "Actions"], rows, "No access keys."));
  }

  const description = h("input", { name: "description", maxlength: 200, autocomplete: "off" });
  const form = h("form", { class: "inline", "aria-labelledby": "create-key-title" },
    h("h2", { id: "create-key-title", class: "visually-hidden" }, "Create an access key"),
    field("Key description", description), h("button", { type: "submit" }, "Create access key"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      const key = await post(`/users/${seg(user)}/keys`, { description: description.value.trim() });
      description.value = "";
      await attempt(load);
      await showSecretOnce(key);
    });
  });
  await load();
  return h("section", { "aria-labelledby": "keys-title" },
    h("h2", { id: "keys-title" }, `Keys of ${displayName}`), form, showRevoked, results);
}

// The only time a secret is on the page: a dialog that is removed, with the secret, when it closes.
async function showSecretOnce(key) {
  const secret = h("input", { readonly: true, value: key.secret, class: "secret", spellcheck: "false",
    autocomplete: "off", "aria-describedby": "secret-hint" });
  const copied = h("span", { role: "status", class: "copied" });
  const copy = button("Copy secret", async () => {
    try {
      await navigator.clipboard.writeText(secret.value);
    } catch {
      secret.select();
      document.execCommand("copy");
    }
    copied.textContent = "Copied.";
  });
  await dialog("Access key created", [
    h("p", { id: "secret-hint" }, h("strong", {}, "Copy the secret now: it is shown only this once."),
      " The server keeps only a hash of it."),
    field("Key ID", h("input", { readonly: true, value: key.id, class: "secret" })),
    field("Secret", secret),
    h("p", {}, copy, " ", copied),
  ], [{ label: "Done", value: true, kind: "primary" }]);
  secret.value = "";
  delete key.secret;
  flash(`Access key ${key.id} created.`);
}

async function revokeKey(ctx, user, key, current, reload) {
  const warning = current ? " You are logged in with this key: revoking it ends this session." : "";
  const ok = await confirm(`Revoke access key ${key.id}?`,
    `Clients using it can no longer log in, and their tokens stop working.${warning}`, "Revoke key");
  if (!ok) return;
  await attempt(async () => {
    await del(`/users/${seg(user)}/keys/${seg(key.id)}`);
    flash(`Access key ${key.id} revoked.`);
    await reload();
  });
}
