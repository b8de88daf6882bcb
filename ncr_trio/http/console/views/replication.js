// A registry's replication (docs/replication.md): the Replication tab (its policies with their status,
// creating one, enabling, running and deleting them), a policy's page (its settings, changing it, its
// executions) and an execution's page (its counts and its tasks, one per artifact). Viewers read
// everything; changing, running and stopping need the manage permission (the guide's role table), and
// their controls are not shown to others. A page showing a Pending or Running execution asks the API
// again every POLL_MS until it has ended, or until the page is left (ctx.alive()).

import { del, get, patch, post, seg } from "../api.js";
import {
  NONE, attempt, badge, button, bytes, checkbox, confirm, details, field, flash, h, link, orNone, pager, replace,
  select, shortDigest, showError, table, time, yesNo,
} from "../dom.js";
import { breadcrumbs, registryHref } from "./registries.js";
import { remoteHref, validity } from "./remotes.js";
import { enabledSwitch } from "./webhooks.js";

const POLL_MS = 1000;
const NAME_PATTERN = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";

const DIRECTIONS = [["push", "Push (from this registry to the remote)"],
  ["pull", "Pull (from the remote to this registry)"]];
const TRIGGERS = [["manual", "Manual (Run now only)"], ["scheduled", "Scheduled (cron, UTC)"],
  ["event", "Event-based (each tag pushed from now on; push only)"]];
const MODES = [["match", "match (only the tags it matches)"], ["exclude", "exclude (all but the tags it matches)"]];

const EXECUTION_STATUS = {
  Pending: "muted", Running: "info", Succeeded: "ok", Failed: "danger", Stopped: "warn", Skipped: "muted",
};
const TASK_STATUS = { ...EXECUTION_STATUS };

export function isRunning(execution) {
  return execution.status === "Pending" || execution.status === "Running";
}

function statusBadge(status, kinds = EXECUTION_STATUS) {
  return badge(status, kinds[status]);
}

function policiesApi(registry) {
  return `/registries/${seg(registry)}/replications`;
}

function policyApi(registry, id) {
  return `${policiesApi(registry)}/${seg(String(id))}`;
}

function executionApi(registry, id, execution) {
  return `${policyApi(registry, id)}/executions/${seg(String(execution))}`;
}

export function policyHref(registry, id) {
  return `${registryHref(registry, "replication")}/${seg(String(id))}`;
}

export function executionHref(registry, id, execution) {
  return `${policyHref(registry, id)}/executions/${seg(String(execution))}`;
}

// "push to hq:team" / "pull from hq:team": the direction and the other side (linked for administrators).
function route(ctx, p) {
  const remote = ctx.me.system_admin ? link(remoteHref(p.remote), p.remote) : p.remote;
  return h("span", {}, p.direction === "push" ? "push to " : "pull from ", remote, " ",
    h("code", {}, p.remote_namespace));
}

function filters(p) {
  const image = p.name_filter ? h("code", {}, p.name_filter) : "every image";
  const tags = p.tag_filter
    ? [p.tag_filter_mode === "exclude" ? "tags except " : "tags ", h("code", {}, p.tag_filter)]
    : "every tag";
  return h("span", {}, image, "; ", tags);
}

function trigger(p) {
  if (p.trigger === "scheduled") return h("span", {}, "scheduled ", h("code", {}, p.schedule), " (UTC)");
  if (p.trigger === "event") return "event-based";
  return "manual";
}

function enabledBadge(enabled) {
  return enabled ? badge("enabled", "ok") : badge("disabled", "muted");
}

function count(n) {
  return String(n ?? 0);
}

// Starts polling: `tick()` runs every POLL_MS while this view is shown and returns whether to go on.
function poll(ctx, tick) {
  let timer = null;
  const step = async () => {
    timer = null;
    if (!ctx.alive()) return;
    let again = false;
    try {
      again = await tick();
    } catch (error) {
      if (error && error.status !== 401 && ctx.alive()) showError(error);
      return;
    }
    if (again && ctx.alive()) timer = setTimeout(step, POLL_MS);
  };
  return {
    // (Re)starts it unless it is waiting already.
    start() {
      if (timer === null) timer = setTimeout(step, POLL_MS);
    },
  };
}

// Shows `build()` in `into` unless `data` is what it shows already: a poll that finds nothing new leaves
// the page alone (and the keyboard focus where it was).
const shown = new WeakMap();

function show(into, data, build) {
  const key = JSON.stringify(data);
  if (shown.get(into) === key) return;
  shown.set(into, key);
  replace(into, ...build());
}

// -- the create / change form ---------------------------------------------------------------------------

// The remote: chosen from the list by system administrators (who see remotes), named by others.
async function remoteControl(ctx, current) {
  if (!ctx.me.system_admin) {
    return h("input", { name: "remote", required: true, autocomplete: "off", spellcheck: "false",
      value: current ? current.remote : "" });
  }
  const { remotes } = await get("/remotes");
  const options = [["", remotes.length ? "Choose a remote" : "No remotes yet: create one first"],
    ...remotes.map((r) => [r.name, `${r.name} (${r.url}, ${r.status})`])];
  if (current && !remotes.some((r) => r.name === current.remote)) options.push([current.remote, current.remote]);
  return select(options, { name: "remote", required: true, value: current ? current.remote : "" });
}

async function policyForm(ctx, registry, current, submitLabel, onSubmit) {
  const name = h("input", { name: "name", required: true, pattern: NAME_PATTERN, maxlength: 64, autocomplete: "off",
    value: current ? current.name : "" });
  const description = h("input", { name: "description", value: current ? current.description : "" });
  const direction = select(DIRECTIONS, { name: "direction", value: current ? current.direction : "push" });
  const remote = await remoteControl(ctx, current);
  const namespace = h("input", { name: "remote_namespace", pattern: NAME_PATTERN, maxlength: 64, autocomplete: "off",
    spellcheck: "false", placeholder: registry, value: current ? current.remote_namespace : "" });
  const nameFilter = h("input", { name: "name_filter", autocomplete: "off", spellcheck: "false", placeholder: "**",
    value: current ? current.name_filter : "" });
  const tagFilter = h("input", { name: "tag_filter", autocomplete: "off", spellcheck: "false", placeholder: "**",
    value: current ? current.tag_filter : "" });
  const mode = select(MODES, { name: "tag_filter_mode", value: current ? current.tag_filter_mode : "match" });
  const trig = select(TRIGGERS, { name: "trigger", value: current ? current.trigger : "manual" });
  const schedule = h("input", { name: "schedule", autocomplete: "off", spellcheck: "false", placeholder: "0 3 * * *",
    value: current ? current.schedule : "" });
  const scheduleField = field("Schedule (UTC)", schedule,
    "A preset (Hourly, Daily, Weekly) or five cron fields: minute, hour, day of month, month, day of week.");
  const showSchedule = () => {
    scheduleField.hidden = trig.value !== "scheduled";
    schedule.required = trig.value === "scheduled";
  };
  trig.addEventListener("change", showSchedule);
  showSchedule();
  const override = checkbox("Override: replace a different artifact under the same tag at the target",
    { name: "override", checked: current ? current.override : false });
  const bandwidth = h("input", { name: "bandwidth_kbps", type: "number", min: 0, max: 10_000_000, step: 1,
    value: current ? String(current.bandwidth_kbps) : "0" });
  const enabled = current ? null : checkbox("Enabled", { name: "enabled", checked: true });
  const form = h("form", { class: "card", "aria-label": submitLabel },
    field("Policy name", name, "Lower-case letters and digits, separated by . _ __ or -; unique in the registry."),
    field("Description", description),
    field("Direction", direction),
    field("Remote", remote, ctx.me.system_admin ? "Remotes are managed on the Remotes page."
      : "The name of a remote a system administrator registered."),
    field("Remote namespace", namespace, `The registry on the other side; empty: ${registry}.`),
    field("Image filter", nameFilter, "The image name without the registry (tools/lint): *, **, ?, {a,b}; " +
      "empty: every image."),
    field("Tag filter", tagFilter, "*, **, ?, {a,b}; empty: every tag."),
    field("Tag filter mode", mode),
    field("Trigger", trig, "An event-based policy copies only what is pushed after it exists."),
    scheduleField,
    override,
    field("Bandwidth limit (KiB/s)", bandwidth, "0: no limit."),
    enabled,
    h("div", { class: "actions" }, h("button", { type: "submit" }, submitLabel)));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = {
      name: name.value.trim(),
      description: description.value,
      direction: direction.value,
      remote: remote.value.trim(),
      name_filter: nameFilter.value.trim(),
      tag_filter: tagFilter.value.trim(),
      tag_filter_mode: mode.value,
      trigger: trig.value,
      schedule: trig.value === "scheduled" ? schedule.value.trim() : "",
      override: override.querySelector("input").checked,
      bandwidth_kbps: Number(bandwidth.value || 0),
    };
    body.remote_namespace = namespace.value.trim() || registry;
    if (enabled) body.enabled = enabled.querySelector("input").checked;
    attempt(() => onSubmit(body));
  });
  return form;
}

// -- actions --------------------------------------------------------------------------------------------

// Starts a run; `after(execution)` shows it. A run a running one makes skipped is said so.
async function runNow(registry, p, after) {
  await attempt(async () => {
    const execution = await post(`${policyApi(registry, p.id)}/run`);
    if (execution.status === "Skipped") {
      flash(`Replication ${p.name}: execution #${execution.id} skipped (${execution.detail || "one is running"}).`);
    } else {
      flash(`Replication ${p.name}: execution #${execution.id} started.`);
    }
    await after(execution);
  });
}

function runButton(registry, p, after) {
  return button("Run now", () => runNow(registry, p, after),
    { "aria-label": `Run replication policy ${p.name} now`, disabled: !p.enabled,
      title: p.enabled ? undefined : "Enable the policy to run it" });
}

async function deletePolicy(ctx, registry, p, after) {
  const ok = await confirm(`Delete replication policy ${p.name}?`,
    "Its history goes with it. What it replicated stays at the target.", "Delete policy");
  if (!ok) return;
  await attempt(async () => {
    await del(policyApi(registry, p.id));
    flash(`Replication policy ${p.name} deleted.`);
    if (after) await after();
    else ctx.go(registryHref(registry, "replication"));
  });
}

function stopButton(registry, policy, execution, after) {
  return button("Stop", async () => {
    const ok = await confirm(`Stop execution #${execution.id}?`,
      "Artifacts being copied stop; what was copied stays at the target. A later run copies the rest.",
      "Stop execution");
    if (!ok) return;
    await attempt(async () => {
      await post(`${executionApi(registry, policy.id, execution.id)}/stop`);
      flash(`Execution #${execution.id} is stopping.`);
      await after();
    });
  }, { kind: "danger", "aria-label": `Stop execution #${execution.id}`, disabled: execution.stop_requested });
}

// -- the tab --------------------------------------------------------------------------------------------

export async function replicationTab(ctx, registry) {
  const name = registry.name;
  const canManage = ctx.can("manage", name);
  const results = h("div", { class: "results" });
  const watcher = poll(ctx, load);

  // The policies, each with its newest execution; whether one of those is still running.
  async function load() {
    const { policies } = await get(policiesApi(name));
    const latest = await Promise.all(policies.map(async (p) =>
      (await get(`${policyApi(name, p.id)}/executions`, { per_page: 1 })).executions[0] || null));
    show(results, [policies, latest], () => [policiesTable(policies, latest)]);
    return latest.some((e) => e && isRunning(e));
  }

  function policiesTable(policies, latest) {
    const rows = policies.map((p, i) => {
      const last = latest[i];
      const cells = [
        link(policyHref(name, p.id), p.name),
        route(ctx, p),
        filters(p),
        trigger(p),
        canManage
          ? enabledSwitch(`Enable replication policy ${p.name}`, p.enabled, async (on) => {
            await patch(policyApi(name, p.id), { enabled: on });
            flash(`Replication policy ${p.name} ${on ? "enabled" : "disabled"}.`);
            await load();
          })
          : enabledBadge(p.enabled),
        validity(p.status, p.reason),
        last ? h("span", {}, link(executionHref(name, p.id, last.id), `#${last.id}`), " ", statusBadge(last.status),
          " ", time(last.started_at)) : "never run",
      ];
      if (canManage) {
        cells.push(h("span", { class: "row-actions" },
          runButton(name, p, async () => { await load(); watcher.start(); }), " ",
          h("a", { href: policyHref(name, p.id), "aria-label": `Change replication policy ${p.name}` }, "Change"),
          " ",
          button("Delete", () => deletePolicy(ctx, name, p, load),
            { kind: "danger", "aria-label": `Delete replication policy ${p.name}` })));
      }
      return cells;
    });
    const headers = ["Policy", "Replicates", "Filters", "Trigger", "Enabled", "Status", "Last execution"];
    if (canManage) headers.push("Actions");
    return table(`Replication policies of ${name}`, headers, rows,
      canManage ? "No replication policies yet: create one to push images to a remote or pull them from one."
        : "No replication policies.");
  }

  let create = null;
  if (canManage) {
    const form = await policyForm(ctx, name, null, "Create replication policy", async (body) => {
      const created = await post(policiesApi(name), body);
      flash(`Replication policy ${created.name} created: ${created.status}` +
        `${created.reason ? ` (${created.reason})` : ""}.`);
      ctx.go(policyHref(name, created.id));
    });
    create = h("details", { class: "panel" }, h("summary", {}, "Create a replication policy"), form);
  }
  if (await load()) watcher.start();
  return h("section", { "aria-labelledby": "replication-title" },
    h("h2", { id: "replication-title" }, "Replication"),
    h("p", { class: "hint" }, "A replication policy copies images between this registry and a remote registry: ",
      "push sends them there, pull brings them here. An artifact the target has already is not copied again, ",
      "and deleting one here never deletes the copy. A policy is valid when its remote answers."),
    create, results);
}

// -- a policy -------------------------------------------------------------------------------------------

function policyDetails(ctx, p) {
  return details([
    ["Status", validity(p.status, p.reason)],
    ["Direction", p.direction],
    ["Remote", ctx.me.system_admin ? link(remoteHref(p.remote), p.remote) : p.remote],
    ["Remote namespace", h("code", {}, p.remote_namespace)],
    ["Image filter", p.name_filter ? h("code", {}, p.name_filter) : "every image"],
    ["Tag filter", p.tag_filter ? h("span", {}, h("code", {}, p.tag_filter), ` (${p.tag_filter_mode})`)
      : "every tag"],
    ["Trigger", trigger(p)],
    ["Next run", p.trigger === "scheduled" ? time(p.next_run_at, "not planned") : NONE],
    ["Override", yesNo(p.override)],
    ["Bandwidth limit", p.bandwidth_kbps ? `${p.bandwidth_kbps} KiB/s` : "none"],
    ["Enabled", enabledBadge(p.enabled)],
    ["Description", orNone(p.description)],
    ["Created", time(p.created_at)],
    ["Updated", time(p.updated_at)],
  ]);
}

export async function policyView(ctx) {
  const [registry, id] = ctx.params;
  const p = await get(policyApi(registry, id));
  const canManage = ctx.can("manage", registry);
  const history = h("div", { class: "results" });
  let page = Number(ctx.query.get("page")) || 1;
  const watcher = poll(ctx, loadHistory);

  async function loadHistory() {
    const answer = await get(`${policyApi(registry, p.id)}/executions`, { page });
    if (!ctx.alive()) return false; // left while asking: the address is another page's now
    ctx.setQuery({ page });
    show(history, answer, () => historyTable(answer));
    return answer.executions.some(isRunning);
  }

  function historyTable(answer) {
    const rows = answer.executions.map((e) => {
      const cells = [
        link(executionHref(registry, p.id, e.id), `#${e.id}`),
        e.trigger,
        h("span", {}, statusBadge(e.status), e.stop_requested && isRunning(e) ? " (stopping)" : null),
        time(e.started_at),
        time(e.ended_at, isRunning(e) ? "running" : NONE),
        count(e.copied),
        count(e.skipped),
        count(e.failed),
        bytes(e.bytes),
        orNone(e.detail),
      ];
      if (canManage) cells.push(isRunning(e) ? stopButton(registry, p, e, loadHistory) : NONE);
      return cells;
    });
    const headers = ["Execution", "Trigger", "Status", "Started", "Ended", "Copied", "Skipped", "Failed", "Bytes",
      "Detail"];
    if (canManage) headers.push("Actions");
    return [table(`Executions of ${p.name}, newest first`, headers, rows, "No executions yet."),
      pager(answer, (n) => { page = n; attempt(async () => { if (await loadHistory()) watcher.start(); }); },
        "executions")];
  }

  let controls = null;
  let edit = null;
  let danger = null;
  if (canManage) {
    controls = h("div", { class: "actions" },
      runButton(registry, p, async () => {
        page = 1;
        await loadHistory();
        watcher.start();
      }),
      enabledSwitch(`Enable replication policy ${p.name}`, p.enabled, async (on) => {
        await patch(policyApi(registry, p.id), { enabled: on });
        flash(`Replication policy ${p.name} ${on ? "enabled" : "disabled"}.`);
        ctx.reload();
      }));
    edit = h("details", { class: "panel" }, h("summary", {}, "Change this policy"),
      await policyForm(ctx, registry, p, "Save replication policy", async (body) => {
        const changed = await patch(policyApi(registry, p.id), body);
        flash(`Replication policy ${changed.name} saved: ${changed.status}` +
          `${changed.reason ? ` (${changed.reason})` : ""}.`);
        ctx.reload();
      }));
    danger = h("div", { class: "actions" },
      button("Delete policy", () => deletePolicy(ctx, registry, p), { kind: "danger" }));
  }
  if (await loadHistory()) watcher.start();
  return h("section", {},
    breadcrumbs([["#/registries", "Registries"], [registryHref(registry), registry],
      [registryHref(registry, "replication"), "Replication"]], p.name),
    h("h1", {}, `Replication policy ${p.name}`),
    policyDetails(ctx, p),
    controls, edit,
    h("section", { "aria-labelledby": "executions-title" },
      h("h2", { id: "executions-title" }, "Executions"), history),
    danger);
}

// -- an execution ---------------------------------------------------------------------------------------

function executionDetails(e) {
  return details([
    ["Status", h("span", {}, statusBadge(e.status), e.stop_requested && isRunning(e) ? " (stopping)" : null)],
    ["Trigger", e.trigger],
    ["Started", time(e.started_at)],
    ["Ended", time(e.ended_at, isRunning(e) ? "running" : NONE)],
    ["Copied", count(e.copied)],
    ["Skipped", count(e.skipped)],
    ["Failed", count(e.failed)],
    ["Bytes", bytes(e.bytes)],
    ["Detail", orNone(e.detail)],
  ]);
}

function tasksTable(e, tasks) {
  const rows = tasks.map((k) => [
    k.source,
    k.target,
    h("code", { title: k.digest }, shortDigest(k.digest)),
    statusBadge(k.status, TASK_STATUS),
    count(k.attempts),
    bytes(k.bytes),
    orNone(k.error),
    time(k.started_at),
    time(k.ended_at),
  ]);
  return table(`Tasks of execution #${e.id}`,
    ["Source", "Target", "Digest", "Status", "Attempts", "Bytes", "Error", "Started", "Ended"], rows,
    isRunning(e) ? "No tasks yet: the source is being read." : "No tasks: nothing was selected to copy.");
}

export async function executionView(ctx) {
  const [registry, id, executionId] = ctx.params;
  const p = await get(policyApi(registry, id));
  const canManage = ctx.can("manage", registry);
  const summary = h("div", { class: "results", "aria-live": "polite" });
  const tasks = h("div", { class: "results" });
  let page = 1;
  let execution = null;
  const watcher = poll(ctx, load);

  async function load() {
    const [e, answer] = await Promise.all([get(executionApi(registry, p.id, executionId)),
      get(`${executionApi(registry, p.id, executionId)}/tasks`, { page })]);
    execution = e;
    show(summary, e, () => [executionDetails(e),
      canManage && isRunning(e) ? h("div", { class: "actions" }, stopButton(registry, p, e, load)) : null]);
    show(tasks, [e.status, answer], () => [tasksTable(e, answer.tasks),
      pager(answer, (n) => { page = n; attempt(load); }, "tasks")]);
    return isRunning(e);
  }

  if (await load()) watcher.start();
  return h("section", {},
    breadcrumbs([["#/registries", "Registries"], [registryHref(registry), registry],
      [registryHref(registry, "replication"), "Replication"], [policyHref(registry, p.id), p.name]],
    `Execution #${execution.id}`),
    h("h1", {}, `Execution #${execution.id} of ${p.name}`),
    summary,
    h("section", { "aria-labelledby": "tasks-title" }, h("h2", { id: "tasks-title" }, "Tasks"), tasks));
}
