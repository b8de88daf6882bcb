// Building the page from data without ever parsing it as HTML: every string from the API goes
// into a text node or an attribute value.

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "on") {
      for (const [event, handler] of Object.entries(value)) el.addEventListener(event, handler);
    } else if (key === "class") {
      el.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "value" || key === "checked" || key === "selected") {
      el[key] = value;
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

// -- formatting -----------------------------------------------------------------------------------

export const NONE = "-";

export function bytes(n) {
  if (n === null || n === undefined) return NONE;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

export function time(iso, never = NONE) {
  if (!iso) return never;
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return h("time", { datetime: iso, title: iso }, dateFormat.format(date));
}

export function shortDigest(digest) {
  if (!digest) return NONE;
  const [algorithm, hex] = digest.split(":", 2);
  return hex ? `${algorithm}:${hex.slice(0, 12)}` : digest;
}

const MEDIA_TYPES = {
  "application/vnd.oci.image.manifest.v1+json": "OCI image manifest",
  "application/vnd.oci.image.index.v1+json": "OCI image index",
  "application/vnd.docker.distribution.manifest.v2+json": "Docker image manifest",
  "application/vnd.docker.distribution.manifest.list.v2+json": "Docker manifest list",
};

export function mediaType(type) {
  return type ? MEDIA_TYPES[type] || type : NONE;
}

export function platforms(list) {
  if (!list || list.length === 0) return NONE;
  return list.map((p) => [p.os, p.architecture, p.variant].filter(Boolean).join("/")).join(", ");
}

export function orNone(value) {
  return value === null || value === undefined || value === "" ? NONE : String(value);
}

export function yesNo(value) {
  return value ? "yes" : "no";
}

// -- building blocks ------------------------------------------------------------------------------

export function link(href, ...children) {
  return h("a", { href }, ...children);
}

export function button(label, onClick, { kind, type = "button", ...props } = {}) {
  return h("button", { type, class: kind ? `button-${kind}` : undefined, on: { click: onClick }, ...props }, label);
}

let fields = 0;

// A labelled field: <label for> and its control (and a hint the control is described by).
export function field(label, control, hint) {
  fields += 1;
  if (!control.id) control.id = `field-${fields}`;
  let hintNode = null;
  if (hint) {
    hintNode = h("span", { class: "field-hint", id: `${control.id}-hint` }, hint);
    const described = control.getAttribute("aria-describedby");
    control.setAttribute("aria-describedby", [described, hintNode.id].filter(Boolean).join(" "));
  }
  return h("div", { class: "field" }, h("label", { class: "field-label", for: control.id }, label), control, hintNode);
}

export function checkbox(label, props = {}) {
  return h("label", { class: "check" }, h("input", { type: "checkbox", ...props }), " ", label);
}

// A write-only value (a secret): never filled in; says whether one is set, and may remove it.
export function writeOnly(label, name, current, isSet, hint) {
  const input = h("input", { type: "password", name, autocomplete: "new-password", spellcheck: "false",
    placeholder: current && isSet ? "set (leave empty to keep it)" : "" });
  const remove = current && isSet ? checkbox(`Remove the ${label.toLowerCase()}`, { name: `clear_${name}` }) : null;
  const labelled = field(label, input, current
    ? (isSet ? "Set: it is never shown. Type a new one to replace it." : "Not set.") : hint);
  return {
    nodes: [labelled, remove],
    // undefined: unchanged; "" / null: remove; a string: the new value.
    value() {
      if (remove && remove.querySelector("input").checked) return null;
      return input.value === "" ? undefined : input.value;
    },
    clear() {
      input.value = "";
    },
  };
}

export function select(options, { value, ...props } = {}) {
  const el = h("select", props, options.map(([optionValue, label]) => h("option", { value: optionValue }, label)));
  if (value !== undefined) el.value = value;
  return el;
}

// A table; `rows` are arrays of cells (nodes or text). An empty list says so instead.
export function table(caption, headers, rows, empty = "Nothing here yet.") {
  if (rows.length === 0) return h("p", { class: "empty" }, empty);
  return h("table", {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, headers.map((label) => h("th", { scope: "col" }, label)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell, i) =>
      i === 0 ? h("th", { scope: "row" }, cell) : h("td", {}, cell))))));
}

export function details(pairs) {
  return h("dl", { class: "details" }, pairs.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

export function badge(text, kind) {
  return h("span", { class: ["badge", kind && `badge-${kind}`] }, text);
}

// "Page 2 of 5" with previous and next buttons, from a paginated answer.
export function pager(answer, onPage, noun = "items") {
  const pages = Math.max(1, Math.ceil((answer.total || 0) / (answer.per_page || 1)));
  const page = answer.page || 1;
  if (pages <= 1) return h("p", { class: "pager-summary" }, `${answer.total ?? 0} ${noun}`);
  return h("nav", { class: "pager", "aria-label": `Pages of ${noun}` },
    button("Previous page", () => onPage(page - 1), { disabled: page <= 1 }),
    h("span", {}, ` Page ${page} of ${pages} (${answer.total} ${noun}) `),
    button("Next page", () => onPage(page + 1), { disabled: page >= pages }));
}

// -- messages -------------------------------------------------------------------------------------

let flashTimer = null;
let flashedAt = 0;

export function flash(message) {
  const region = document.getElementById("flash");
  replace(region, message);
  flashedAt = Date.now();
  clearTimeout(flashTimer);
  flashTimer = setTimeout(() => region.replaceChildren(), 8000);
}

// On navigation: a message stays for the page an action led to, not for later ones.
export function clearStaleFlash() {
  if (Date.now() - flashedAt > 1500) document.getElementById("flash").replaceChildren();
}

export function showError(error) {
  const region = document.getElementById("error");
  if (!error) {
    region.replaceChildren();
    region.hidden = true;
    return;
  }
  const message = error instanceof Error ? error.message : String(error);
  replace(region, h("span", {}, message), " ", button("Dismiss", () => showError(null), { kind: "link" }));
  region.hidden = false;
}

// Runs an action from a button or form: errors are shown, never thrown into the void.
export async function attempt(action) {
  showError(null);
  try {
    return await action();
  } catch (error) {
    if (error && error.status !== 401) showError(error);
    return undefined;
  }
}

// -- dialogs --------------------------------------------------------------------------------------

// A modal <dialog>; resolves with the chosen action's value (null when dismissed with Escape).
// The dialog leaves the page at once when it closes, with everything it showed.
let dialogs = 0;

export function dialog(title, body, actions) {
  return new Promise((resolve) => {
    dialogs += 1;
    let done = false;
    const finish = (value) => {
      if (done) return;
      done = true;
      if (el.open) el.close();
      el.remove();
      resolve(value);
    };
    const heading = h("h2", { id: `dialog-title-${dialogs}` }, title);
    const el = h("dialog", { "aria-labelledby": heading.id }, heading, h("div", { class: "dialog-body" }, body),
      h("div", { class: "dialog-actions" }, actions.map(({ label, value, kind }) =>
        button(label, () => finish(value), { kind }))));
    el.addEventListener("close", () => finish(null)); // Escape
    document.body.append(el);
    el.showModal();
  });
}

export async function confirm(title, message, confirmLabel, extra) {
  const body = [h("p", {}, message), extra || null];
  const chosen = await dialog(title, body, [
    { label: "Cancel", value: false },
    { label: confirmLabel, value: true, kind: "danger" },
  ]);
  return chosen === true;
}
