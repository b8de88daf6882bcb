// Vulnerability scanning in the console (docs/scanning.md): an artifact's vulnerability column with the
// guide's states, Scan and Stop for managers, the report sortable by severity, a registry's scan settings.
// Everything the report shows is text (textContent through h()); links are made only of http(s) URLs.

import { get, patch, post, put, seg } from "../api.js";
import {
  NONE, attempt, badge, button, checkbox, details, field, flash, h, replace, select, shortDigest, table, time,
} from "../dom.js";

const SEVERITIES = ["Critical", "High", "Medium", "Low", "Unknown"];
const rank = (severity) => { const i = SEVERITIES.indexOf(severity); return i < 0 ? SEVERITIES.length : i; };

// Not Scanned "-", Scanning, Stopped, Failed, or "total / fixable / severity" when done; null: not scannable.
export function vulnerabilityCell(a) {
  const status = a.scan_status;
  if (status === null || status === undefined) return h("span", { title: "not an image: not scanned" }, "");
  if (status === "Not Scanned") return h("span", { class: "scan-state", title: "Not Scanned" }, NONE);
  if (status !== "Done") return badge(status, `scan-${status.toLowerCase()}`);
  const v = a.vulnerabilities;
  if (!v || v.total === 0) return h("span", { class: "scan-done" }, "No vulnerabilities");
  return h("span", { class: "scan-done", title: `database ${v.db_version}` },
    `${v.total} total / ${v.fixable} fixable / `, badge(v.severity || "Unknown", `severity-${(v.severity || "Unknown").toLowerCase()}`));
}

export function scanApi(imageApi, digest) {
  return `${imageApi}/artifacts/${seg(digest)}`;
}

// Scan (unless one is under way) or Stop (while one is): managers only; `done` runs after the request.
export function scanButton(imageApi, a, done) {
  const label = shortDigest(a.digest);
  if (a.scan_status === null || a.scan_status === undefined) return null;
  if (a.scan_status === "Scanning") {
    return button("Stop", () => attempt(async () => {
      await post(`${scanApi(imageApi, a.digest)}/scan/stop`);
      flash(`Stopping the scan of ${label}.`);
      done();
    }), { "aria-label": `Stop the scan of ${a.digest}` });
  }
  return button("Scan", () => attempt(async () => {
    await post(`${scanApi(imageApi, a.digest)}/scan`);
    flash(`Scanning ${label}.`);
    done();
  }), { "aria-label": `Scan ${a.digest}` });
}

export function safeHref(url) {
  try {
    const parsed = new URL(url);
    return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
  } catch {
    return null;
  }
}

function links(urls) {
  const items = (urls || []).map((url) => {
    const href = safeHref(url);
    return h("li", {}, href ? h("a", { href, rel: "noopener noreferrer nofollow", target: "_blank" }, url) : url);
  });
  return items.length ? h("ul", { class: "links" }, items) : NONE;
}

// The report of the last finished scan (null when there is none yet), sortable by severity.
export async function reportSection(imageApi, digest) {
  const out = h("section", { "aria-labelledby": "report-title" }, h("h2", { id: "report-title" }, "Vulnerabilities"));
  let report;
  try {
    report = await get(`${scanApi(imageApi, digest)}/vulnerabilities`);
  } catch (error) {
    if (error.status !== 404) throw error;
    out.append(h("p", { class: "empty" }, "No finished scan yet."));
    return out;
  }
  const rows = report.platforms.flatMap((p) => p.vulnerabilities.map((v) => ({ ...v, platform: p.platform })));
  const multi = report.platforms.length > 1;
  const unsupported = [...new Set(report.platforms.flatMap((p) => p.unsupported || []))];
  const order = select([["worst", "Severity, worst first"], ["least", "Severity, least first"],
    ["package", "Package"]], { value: "worst", name: "sort" });
  const body = h("div", {});
  function draw() {
    const sorted = [...rows].sort((a, b) => {
      if (order.value === "package") return a.package.localeCompare(b.package) || rank(a.severity) - rank(b.severity);
      const d = rank(a.severity) - rank(b.severity) || (b.score || 0) - (a.score || 0) || a.package.localeCompare(b.package);
      return order.value === "least" ? -d : d;
    });
    const headers = ["ID", ...(multi ? ["Platform"] : []), "Severity", "Package", "Installed", "Fixed", "Aliases",
      "Description", "Links"];
    replace(body, table(`Vulnerabilities of ${shortDigest(digest)}`, headers, sorted.map((v) => [
      v.id, ...(multi ? [v.platform || NONE] : []),
      badge(v.severity, `severity-${v.severity.toLowerCase()}`), v.package, v.installed, v.fixed || NONE,
      (v.aliases || []).join(", ") || NONE, v.summary || NONE, links(v.links),
    ]), "No vulnerabilities found."));
  }
  order.addEventListener("change", draw);
  draw();
  out.append(details([
    ["Scanned", time(report.ended_at)],
    ["Database", report.db_version || NONE],
    ["Found", `${report.total} total / ${report.fixable} fixable / ${report.severity || "none"}`],
    ...(unsupported.length ? [["Not read", unsupported.join(", ")]] : []),
  ]), field("Sort by", order), body);
  return out;
}

// A registry's scan settings: scan on push, pull prevention and its own allowlist (managers change them).
export async function registryScanSettings(ctx, registry) {
  const path = `/registries/${seg(registry)}/scan`;
  const s = await get(path);
  const facts = details([
    ["Scan on push", s.scan_on_push ? "yes" : "no"],
    ["Prevent pulls", s.prevent_pull_severity ? `${s.prevent_pull_severity} or higher` : "never"],
    ["Allowlist", s.allowlist === null ? "the global one" : s.allowlist.join(", ") || "its own, empty"],
  ]);
  const section = h("section", { "aria-labelledby": "scan-settings-title" },
    h("h2", { id: "scan-settings-title" }, "Vulnerability scanning"), facts);
  if (!ctx.can("manage", registry)) return section;
  const onPush = checkbox("Scan on push", { name: "scan_on_push", checked: s.scan_on_push });
  const threshold = select([["None", "Never"], ["Low", "Low"], ["Medium", "Medium"], ["High", "High"],
    ["Critical", "Critical"]], { value: s.prevent_pull_severity || "None", name: "prevent_pull_severity" });
  const own = h("input", { type: "checkbox", name: "own_allowlist", checked: s.allowlist !== null });
  const ids = h("textarea", { name: "allowlist", rows: 3 });
  ids.value = (s.allowlist || []).join("\n");
  const form = h("form", { class: "card", "aria-label": "Scan settings" },
    h("h3", {}, "Change scan settings"), onPush, field("Prevent pulls of images with vulnerabilities of", threshold, "or higher (412 Precondition Failed)"),
    h("label", {}, own, " Own allowlist (replaces the global one)"),
    field("Allowlisted IDs", ids, "separated by commas or newlines"),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Save scan settings")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      await patch(path, { scan_on_push: form.querySelector("input[name=scan_on_push]").checked,
        prevent_pull_severity: threshold.value, allowlist: own.checked ? ids.value : null });
      flash(`Scan settings of ${registry} saved.`);
      ctx.reload();
    });
  });
  section.append(form);
  return section;
}

// The installation's periodic scan and global allowlist, and a scan of everything (system administrators).
export async function scanningView(ctx) {
  const [schedule, allow] = await Promise.all([get("/scan/schedule"), get("/scan/allowlist")]);
  const preset = select(["None", "Hourly", "Daily", "Weekly", "Custom"].map((p) => [p, p]),
    { value: schedule.preset, name: "preset" });
  const cron = h("input", { name: "cron", autocomplete: "off", spellcheck: "false",
    value: schedule.preset === "Custom" ? schedule.schedule : "" });
  const scheduleForm = h("form", { class: "card", "aria-labelledby": "schedule-title" },
    h("h2", { id: "schedule-title" }, "Periodic scan"),
    details([["Schedule", schedule.schedule], ["Next run", time(schedule.next_run_at)],
      ["Last run", time(schedule.last_run_at, "never")]]),
    field("Scan every artifact", preset, "Daily: 00:00 UTC; Weekly: Saturday 00:00 UTC"),
    field("Cron (UTC)", cron, "five fields, for Custom (\"0 3 * * 1-5\")"),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Save schedule")));
  scheduleForm.addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      const set = await put("/scan/schedule", { schedule: preset.value === "Custom" ? cron.value.trim() : preset.value });
      flash(`Periodic scan: ${set.schedule}.`);
      ctx.reload();
    });
  });
  const ids = h("textarea", { name: "global_allowlist", rows: 4, spellcheck: "false" });
  ids.value = allow.ids.join("\n");
  const allowForm = h("form", { class: "card", "aria-labelledby": "allowlist-title" },
    h("h2", { id: "allowlist-title" }, "Global allowlist"),
    field("Allowlisted IDs", ids, "separated by commas or newlines; a registry's own list replaces this one"),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Save allowlist")));
  allowForm.addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      const set = await put("/scan/allowlist", { ids: ids.value });
      flash(`Global allowlist saved (${set.ids.length} IDs).`);
      ctx.reload();
    });
  });
  const all = button("Scan everything now", () => attempt(async () => {
    const answer = await post("/scan/all");
    flash(`${answer.queued} artifacts queued for a scan.`);
  }));
  return h("section", {}, h("h1", {}, "Vulnerability scanning"), scheduleForm, allowForm,
    h("div", { class: "actions" }, all));
}
