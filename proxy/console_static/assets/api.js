// The only place that talks to the server. The session lives in an HttpOnly cookie the
// page cannot read; the CSRF token lives in this module's memory only, so a reload asks
// GET /admin/v1/session for it again instead of keeping it in storage.

const ADMIN = "/admin/v1";

let csrfToken = null;
let unauthorizedHandler = () => {};

export class ApiError extends Error {
  constructor(status, message, code = null, param = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.param = param;
  }
}

export function setCsrfToken(value) {
  csrfToken = typeof value === "string" && value ? value : null;
}

/** Called once per 401 (outside sign-in itself), so the app can go back to the sign-in view. */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

/**
 * options.signIn: a 401 is the expected answer (wrong token, no session yet), not a
 * session that ended under us, so do not call the unauthorized handler.
 */
export async function request(method, path, body, options = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "Could not reach the server. Check the connection and try again.", "network_error");
  }
  let data = null;
  const text = await response.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!response.ok) {
    const err = data && typeof data === "object" ? data.error : null;
    const message = err && typeof err.message === "string" && err.message
      ? err.message : `The server answered HTTP ${response.status}.`;
    const error = new ApiError(response.status, message, err?.code ?? null, err?.param ?? null);
    if (response.status === 401 && !options.signIn) unauthorizedHandler(error);
    throw error;
  }
  return data;
}

export const get = (path, options) => request("GET", path, undefined, options);
export const post = (path, body, options) => request("POST", path, body ?? {}, options);
export const put = (path, body, options) => request("PUT", path, body ?? {}, options);
export const del = (path, options) => request("DELETE", path, undefined, options);

/** Admin list endpoints answer {"object": "list", "data": [...]}; accept a bare array too. */
export function list(value) {
  if (Array.isArray(value)) return value;
  if (value && Array.isArray(value.data)) return value.data;
  return [];
}

export function adminPath(...segments) {
  return [ADMIN, ...segments.map((s) => encodeURIComponent(s))].join("/");
}

/** T = /admin/v1/tenants/{t}; each extra segment is encoded on its own. */
export function tenantPath(tenantId, ...segments) {
  return adminPath("tenants", tenantId, ...segments);
}

/** A model id may contain "/" (e.g. "meta/llama-3"): encode its parts, keep the slashes. */
export function modelSegment(model) {
  return String(model).split("/").map((part) => encodeURIComponent(part)).join("/");
}

export function usagePath(tenantId, start, groupBy) {
  const query = new URLSearchParams({ tenant: tenantId, start, group_by: groupBy });
  return `${ADMIN}/usage?${query}`;
}

export const SESSION_PATH = `${ADMIN}/session`;
