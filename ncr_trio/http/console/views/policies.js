// A registry's cleanup (policies, schedule, test run, run now, history and a run's details) and its
// protection policies (docs/policies.md).

import { del, get, patch, post, put, seg } from "../api.js";
import {
  NONE, attempt, badge, button, checkbox, confirm, details, field, flash, h, link, orNone, pager, replace, select,
  shortDigest, table, time, yesNo,
} from "../dom.js";
import { artifactHref, breadcrumbs, registryHref } from "./registries.js";
import { enabledSwitch } from "./webhooks.js";

const RULES = [
  ["older_than", "Older than N days (neither pushed nor pulled within them)"],
  ["retain_pushed", "Retain the N most recently pushed artifacts of each image"],
  ["retain_pulled", "Retain the N most recently pulled artifacts of each image"],
];

const PRESETS = [
  ["None", "None (never)"],
  ["Hourly", "Hourly (0 * * * *)"],
  ["Daily", "Daily (0 0 * * *)"],
  ["Weekly", "Weekly (0 0 * * 0, Sunday)"],
  ["Custom", "Custom cron expression"],
];

const OUTCOMES = {
  "would-delete": "warn", deleted: "danger", "kept-protected": "ok", "kept-needed": "info", "skipped-changed": "muted",
};

function cleanupApi(registry) {
  return `/registries/${seg(registry)}/cleanup`;
}

function protectionApi(registry) {
  return `/registries/${seg(registry)}/protection`;
}

export function runHref(registry, id) {
  return `${registryHref(registry, "cleanup")}/runs/${seg(String(id))}`;
}

function enabledBadge(enabled) {
  return enabled ? badge("enabled", "ok") : badge("disabled", "muted");
}

function pattern(value) {
  return h("code", {}, value);
}

// A policy's delete button (after a confirmation).
function deletePolicy(kind, label, path, after) {
  return button("Delete", async () => {
    const ok = await confirm(`Delete ${kind} policy ${label}?`,
      kind === "protection" ? "The tags it covers can be moved and deleted again." : "Later runs no longer apply it.",
      "Delete policy");
    if (!ok) return;
    await attempt(async () => {
      await del(path);
      flash(`${kind === "protection" ? "Protection" : "Cleanup"} policy ${label} deleted.`);
      await after();
    });
  }, { kind: "danger", "aria-label": `Delete ${kind} policy ${label}` });
}

// -- cleanup --------------------------------------------------------------------------------------------

function itemsTable(caption, items) {
  const rows = items.map((item) => {
    const image = item.repository.slice(item.repository.indexOf("/") + 1);
    const registry = item.repository.slice(0, item.repository.indexOf("/"));
    return [
      item.repository,
      item.outcome === "deleted" ? h("code", { title: item.digest }, shortDigest(item.digest))
        : link(artifactHref(registry, image, item.digest), h("code", { title: item.digest }, shortDigest(item.digest))),
      item.tags && item.tags.length ? item.tags.join(", ") : NONE,
      badge(item.outcome, OUTCOMES[item.outcome]),
      orNone(item.reason),
    ];
  });
  return table(caption, ["Repository", "Digest", "Tags", "Outcome", "Reason"], rows,
    "No artifact was selected: nothing to delete.");
}

function runKind(run) {
  return run.dry_run ? "Test run" : "Run";
}

function runSummary(run) {
  return details([
    ["Run", `#${run.id}`],
    ["Kind", run.dry_run ? "test run (nothing deleted)" : "run"],
    ["Triggered by", run.triggered_by],
    ["Status", run.status === "failed" ? badge("failed", "danger") : run.status],
    ["Started", time(run.started_at)],
    ["Finished", time(run.finished_at)],
    [run.dry_run ? "Would delete" : "Deleted", String(run.deleted)],
    ["Kept", String(run.kept)],
    ["Policies applied", run.policies && run.policies.length
      ? run.policies.map((p) => `${p.kind} #${p.id}`).join(", ") : "none"],
    ["Error", orNone(run.error)],
  ]);
}

function cleanupPolicyForm(registry, after) {
  const image = h("input", { name: "image", value: "**", required: true, autocomplete: "off", spellcheck: "false" });
  const tag = h("input", { name: "tag", value: "**", required: true, autocomplete: "off", spellcheck: "false" });
  const untagged = checkbox("Include untagged artifacts", { name: "untagged" });
  const rule = select(RULES, { name: "rule", value: "older_than" });
  const n = h("input", { name: "n", type: "number", min: 0, max: 1000000, step: 1, required: true, value: "30" });
  const form = h("form", { class: "card", "aria-label": "Add a cleanup policy" },
    field("Image pattern", image, "The image without the registry (tools/lint); *, **, ?, {a,b}."),
    field("Tag pattern", tag, "An artifact goes only when every tag pointing at it matches."),
    untagged,
    field("Rule", rule),
    field("N", n, "Days for \"older than\", artifacts to keep for the retain rules."),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Add cleanup policy")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      const policy = await post(`${cleanupApi(registry)}/policies`, {
        image: image.value.trim(), tag: tag.value.trim(), untagged: untagged.querySelector("input").checked,
        rule: rule.value, n: Number(n.value),
      });
      flash(`Cleanup policy #${policy.id} added (${policy.description}).`);
      form.reset();
      panel.open = false;
      await after();
    });
  });
  const panel = h("details", { class: "panel" }, h("summary", {}, "Add a cleanup policy"), form);
  return panel;
}

function scheduleForm(registry, current, after) {
  const preset = select(PRESETS, { name: "preset", value: current.preset || "Custom" });
  const cron = h("input", { name: "cron", autocomplete: "off", spellcheck: "false", placeholder: "30 2 * * 1-5",
    value: current.preset ? "" : current.schedule });
  const custom = field("Cron expression (UTC)", cron,
    "Minute, hour, day of month, month, day of week (0 = Sunday); * / , - and ? in a day field.");
  const showCustom = () => {
    custom.hidden = preset.value !== "Custom";
    cron.required = preset.value === "Custom";
  };
  preset.addEventListener("change", showCustom);
  showCustom();
  const form = h("form", { class: "inline", "aria-label": "Cleanup schedule" },
    field("Schedule preset", preset), custom, h("button", { type: "submit" }, "Save schedule"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      const schedule = preset.value === "Custom" ? cron.value.trim() : preset.value;
      const saved = await put(`${cleanupApi(registry)}/schedule`, { schedule });
      flash(`Cleanup schedule saved: ${saved.preset || saved.schedule}.`);
      await after();
    });
  });
  return form;
}

function scheduleDetails(s) {
  const what = s.schedule === "None" ? "None (never)"
    : s.preset ? `${s.preset} (${s.schedule})` : s.schedule;
  return details([
    ["Schedule", h("span", {}, what, " ", badge(s.timezone || "UTC"))],
    ["Next run", time(s.next_run_at, "never")],
    ["Last run", time(s.last_run_at, "never")],
  ]);
}

export async function cleanupTab(ctx, registry) {
  const name = registry.name;
  const canManage = ctx.can("manage", name);
  const policies = h("div", { class: "results" });
  const schedule = h("div", { class: "results" });
  const result = h("div", { class: "results", "aria-live": "polite" });
  const history = h("div", { class: "results" });
  let page = 1;

  async function loadPolicies() {
    const answer = await get(`${cleanupApi(name)}/policies`);
    const rows = answer.policies.map((p) => {
      const cells = [
        `#${p.id}`, pattern(p.image), pattern(p.tag), yesNo(p.untagged), p.description,
        canManage
          ? enabledSwitch(`Enable cleanup policy #${p.id}`, p.enabled, async (on) => {
            await patch(`${cleanupApi(name)}/policies/${p.id}`, { enabled: on });
            flash(`Cleanup policy #${p.id} ${on ? "enabled" : "disabled"}.`);
            await loadPolicies();
          })
          : enabledBadge(p.enabled),
        time(p.created_at),
      ];
      if (canManage) cells.push(deletePolicy("cleanup", `#${p.id}`, `${cleanupApi(name)}/policies/${p.id}`, loadPolicies));
      return cells;
    });
    const headers = ["Policy", "Image", "Tag", "Untagged", "Rule", "Enabled", "Created"];
    if (canManage) headers.push("Actions");
    replace(policies, table(`Cleanup policies of ${name}`, headers, rows, "No cleanup policies."));
  }

  async function loadSchedule() {
    const s = await get(`${cleanupApi(name)}/schedule`);
    replace(schedule, scheduleDetails(s), canManage ? scheduleForm(name, s, loadSchedule) : null);
  }

  async function loadHistory() {
    const answer = await get(`${cleanupApi(name)}/runs`, { page });
    const rows = answer.runs.map((run) => [
      link(runHref(name, run.id), `#${run.id}`),
      runKind(run),
      run.triggered_by,
      run.status === "failed" ? badge("failed", "danger") : run.status,
      time(run.started_at),
      time(run.finished_at),
      String(run.deleted),
      String(run.kept),
    ]);
    replace(history,
      table(`Cleanup runs of ${name}, newest first`,
        ["Run", "Kind", "Triggered by", "Status", "Started", "Finished", "Deleted (or would be)", "Kept"], rows,
        "No runs yet."),
      pager(answer, (p) => { page = p; attempt(loadHistory); }, "runs"));
  }

  async function run(dryRun) {
    if (!dryRun && !(await confirm(`Run the cleanup of ${name} now?`,
      "Every artifact the enabled cleanup policies select now is deleted (protected ones are kept). " +
      "A test run shows what that is.", "Run now"))) {
      return;
    }
    await attempt(async () => {
      replace(result, h("p", {}, dryRun ? "Test run in progress..." : "Cleanup in progress..."));
      const answer = await post(`${cleanupApi(name)}/${dryRun ? "test" : "run"}`);
      replace(result, h("section", { class: "card", "aria-labelledby": "cleanup-result-title" },
        h("h3", { id: "cleanup-result-title" }, `${runKind(answer)} #${answer.id}: ${answer.status}`),
        runSummary(answer),
        itemsTable(`Items of run #${answer.id}`, answer.items || []),
        h("p", {}, link(runHref(name, answer.id), `Details of run #${answer.id}`))));
      flash(dryRun ? `Test run #${answer.id} finished: nothing was deleted.`
        : `Cleanup run #${answer.id} finished: ${answer.deleted} deleted.`);
      page = 1;
      await loadHistory();
    });
  }

  await Promise.all([loadPolicies(), loadSchedule(), loadHistory()]);
  return h("section", { "aria-labelledby": "cleanup-title" },
    h("h2", { id: "cleanup-title" }, "Cleanup"),
    h("p", { class: "hint" }, "Cleanup deletes the artifacts its enabled policies select (any policy is enough); ",
      "protected tags and the manifests kept artifacts need are never deleted. GC reclaims the space later."),
    h("section", { "aria-labelledby": "cleanup-policies-title" },
      h("h3", { id: "cleanup-policies-title" }, "Policies"),
      canManage ? cleanupPolicyForm(name, loadPolicies) : null, policies),
    h("section", { "aria-labelledby": "cleanup-schedule-title" },
      h("h3", { id: "cleanup-schedule-title" }, "Schedule"), schedule),
    h("section", { "aria-labelledby": "cleanup-runs-title" },
      h("h3", { id: "cleanup-runs-title" }, "Runs"),
      canManage ? h("div", { class: "actions" },
        button("Test run", () => run(true)), button("Run now", () => run(false), { kind: "danger" })) : null,
      result, history));
}

export async function cleanupRunView(ctx) {
  const [registry, id] = ctx.params;
  const run = await get(`${cleanupApi(registry)}/runs/${seg(id)}`);
  return h("section", {},
    breadcrumbs([["#/registries", "Registries"], [registryHref(registry), registry],
      [registryHref(registry, "cleanup"), "Cleanup"]], `Run #${run.id}`),
    h("h1", {}, `Cleanup run #${run.id}`),
    runSummary(run),
    h("section", { "aria-labelledby": "run-items-title" },
      h("h2", { id: "run-items-title" }, "Items"),
      itemsTable(`Items of run #${run.id}`, run.items || [])));
}

// -- protection -----------------------------------------------------------------------------------------

function protectionForm(registry, after) {
  const image = h("input", { name: "image", value: "**", required: true, autocomplete: "off", spellcheck: "false" });
  const tag = h("input", { name: "tag", required: true, autocomplete: "off", spellcheck: "false", placeholder: "v*" });
  const form = h("form", { class: "card", "aria-label": "Add a protection policy" },
    field("Image pattern", image, "The image without the registry (tools/lint); *, **, ?, {a,b}."),
    field("Tag pattern", tag, "Tags it covers cannot be moved by a push nor deleted."),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Add protection policy")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      const policy = await post(`${protectionApi(registry)}/policies`, { image: image.value.trim(),
        tag: tag.value.trim() });
      flash(`Protection policy #${policy.id} added (image "${policy.image}", tag "${policy.tag}").`);
      form.reset();
      panel.open = false;
      await after();
    });
  });
  const panel = h("details", { class: "panel" }, h("summary", {}, "Add a protection policy"), form);
  return panel;
}

export async function protectionTab(ctx, registry) {
  const name = registry.name;
  const canManage = ctx.can("manage", name);
  const results = h("div", { class: "results" });

  async function load() {
    const answer = await get(`${protectionApi(name)}/policies`);
    const rows = answer.policies.map((p) => {
      const cells = [
        `#${p.id}`, pattern(p.image), pattern(p.tag),
        canManage
          ? enabledSwitch(`Enable protection policy #${p.id}`, p.enabled, async (on) => {
            await patch(`${protectionApi(name)}/policies/${p.id}`, { enabled: on });
            flash(`Protection policy #${p.id} ${on ? "enabled" : "disabled"}.`);
            await load();
          })
          : enabledBadge(p.enabled),
        time(p.created_at),
      ];
      if (canManage) cells.push(deletePolicy("protection", `#${p.id}`, `${protectionApi(name)}/policies/${p.id}`, load));
      return cells;
    });
    const headers = ["Policy", "Image", "Tag", "Enabled", "Created"];
    if (canManage) headers.push("Actions");
    replace(results, table(`Protection policies of ${name}`, headers, rows, "No protection policies."));
  }

  await load();
  return h("section", { "aria-labelledby": "protection-title" },
    h("h2", { id: "protection-title" }, "Protection"),
    h("p", { class: "hint" }, "A protected tag is never moved by a push nor deleted, and neither is its artifact; ",
      "cleanup keeps it. Protection wins over cleanup."),
    canManage ? protectionForm(name, load) : null, results);
}
