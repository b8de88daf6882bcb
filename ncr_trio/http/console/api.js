// The management API (/api/v1) and the login session.
//
// The console logs in like any client of the management API: GET /auth/token with Basic credentials
// (a user's name and password, or an access key's ID and secret) and the scope management:api:*, for
// a management token (the API refuses registry tokens). The token is kept in sessionStorage (this tab
// only) and sent with every API call; a 401 ends the session.

const SESSION_KEY = "ncr-console-session";

export class ApiError extends Error {
  constructor(status, code, message, detail) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

// Called when the API answers 401: the app shows the login form again.
let onUnauthorized = () => {};
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

export function session() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    if (saved && typeof saved.token === "string" && saved.expiresAt > Date.now()) {
      return saved;
    }
  } catch {
    // A damaged entry is the same as none.
  }
  sessionStorage.removeItem(SESSION_KEY);
  return null;
}

export function logout() {
  sessionStorage.removeItem(SESSION_KEY);
}

function base64Utf8(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON: the status says enough.
  }
  const first = body && Array.isArray(body.errors) ? body.errors[0] : null;
  const message = first ? first.message : `${response.status} ${response.statusText}`;
  return new ApiError(response.status, first ? first.code : "HTTP_ERROR", message, first ? first.detail : undefined);
}

const MANAGEMENT_SCOPE = "management:api:*";

export async function login(username, password) {
  const response = await fetch("/auth/token?" + new URLSearchParams({ scope: MANAGEMENT_SCOPE }), {
    headers: { Authorization: "Basic " + base64Utf8(`${username}:${password}`) },
    credentials: "omit",
    cache: "no-store",
  });
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 429) {
      const retry = response.headers.get("Retry-After");
      error.message = `Too many failed logins: try again${retry ? ` in ${retry} seconds` : " later"}.`;
    } else if (response.status === 401) {
      error.message = "Wrong user name, access key or password.";
    }
    throw error;
  }
  const body = await response.json();
  const lifetime = Number(body.expires_in) || 300;
  const saved = { token: body.token, expiresAt: Date.now() + lifetime * 1000 - 30_000 };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(saved));
  return saved;
}

// One path segment, escaped.
export function seg(value) {
  return encodeURIComponent(value);
}

// An image name keeps its slashes ("tools/lint"); each part is escaped.
export function imagePath(image) {
  return image.split("/").map(encodeURIComponent).join("/");
}

export async function api(method, path, { body, query } = {}) {
  const current = session();
  if (!current) {
    onUnauthorized();
    throw new ApiError(401, "UNAUTHORIZED", "Your session has ended: log in again.");
  }
  let url = "/api/v1" + path;
  if (query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
    }
    const text = params.toString();
    if (text) url += "?" + text;
  }
  const headers = { Authorization: `Bearer ${current.token}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit", // the token is the only credential: no cookies, no browser login prompt
    cache: "no-store",
  });
  if (response.status === 401) {
    logout();
    onUnauthorized();
    throw await errorOf(response);
  }
  if (!response.ok) throw await errorOf(response);
  if (response.status === 204) return null;
  const text = await response.text();
  return text.trim() ? JSON.parse(text) : null;
}

export const get = (path, query) => api("GET", path, { query });
export const post = (path, body) => api("POST", path, { body: body ?? {} });
export const patch = (path, body) => api("PATCH", path, { body });
export const put = (path, body) => api("PUT", path, { body });
export const del = (path, query) => api("DELETE", path, { query });

// What the user's roles allow, as ncr_trio/auth/roles.py says (the API enforces it anyway).
const ROLE_PERMISSIONS = {
  "project-admin": ["read", "push", "manage"],
  "project-member": ["read", "push", "manage"],
  "service-admin": ["read", "push", "manage"],
  "service-viewer": ["read"],
  "image-uploader": ["read", "push"],
};
export const ROLES = Object.keys(ROLE_PERMISSIONS);

export function can(me, permission, registry = "*") {
  if (!me) return false;
  if (me.system_admin) return true;
  for (const where of [registry, "*"]) {
    const role = me.roles ? me.roles[where] : undefined;
    if (role && (ROLE_PERMISSIONS[role] || []).includes(permission)) return true;
  }
  return false;
}
