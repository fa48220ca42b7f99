// The HTTP API as the dashboard uses it: the user's bearer token, JSON in and
// out, and every failure turned into an ApiError that says what happened.
//
// The token lives in sessionStorage: it survives reloads of this tab, is gone
// when the tab closes, and never appears in a URL (so never in history,
// referrers or server logs).

const TOKEN_KEY = "a4c.token";

export class ApiError extends Error {
  // status 0 means the request never got an answer (network, server down).
  constructor(status, code, message, fields = [], retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.fields = fields;
    this.retryAfter = retryAfter;
  }

  // The reasons given for one field ("name", "ports.0.container_port"…).
  fieldReasons(path) {
    return this.fields.filter((f) => f.path === path || f.path.startsWith(path + ".")).map((f) => f.reason);
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

// Called when the API answers 401 to a call made with the stored token.
let onUnauthorized = () => {};
export function whenUnauthorized(callback) {
  onUnauthorized = callback;
}

// params: an object or an array of [name, value] pairs (for repeated names).
export async function request(method, path, { params, body, bearer, signal } = {}) {
  const url = new URL(path, location.origin);
  if (params) {
    const pairs = Array.isArray(params) ? params : Object.entries(params);
    for (const [name, value] of pairs) {
      if (value !== undefined && value !== null) url.searchParams.append(name, String(value));
    }
  }
  const headers = { Accept: "application/json" };
  const presented = bearer ?? token();
  if (presented) headers.Authorization = `Bearer ${presented}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const init = { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal, cache: "no-store" };
  let response;
  // A read is asked again once: browsers cancel requests in flight when a network interface
  // comes or goes (Chromium's ERR_NETWORK_CHANGED, on every Docker container start). A write
  // is not: it may have been applied, and the person decides whether to send it again.
  for (let tries = method === "GET" ? 2 : 1; !response; tries--) {
    try {
      response = await fetch(url, init);
    } catch (err) {
      if (err.name === "AbortError") throw err;
      if (tries === 1) {
        throw new ApiError(0, "network", "Could not reach the control plane. Check that it is running and your connection works, then retry.");
      }
      await new Promise((resolve) => setTimeout(resolve, RETRY_READ_AFTER_MS));
    }
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (response.ok) return data;
  const detail = data?.error ?? {};
  const retry = response.headers.get("Retry-After");
  const error = new ApiError(
    response.status,
    detail.code ?? "http_error",
    detail.message ?? `The control plane answered ${response.status} ${response.statusText}.`,
    detail.fields ?? [],
    retry === null ? null : Number(retry),
  );
  if (response.status === 401 && bearer === undefined) onUnauthorized(error);
  throw error;
}

const RETRY_READ_AFTER_MS = 250;

export const get = (path, params, options = {}) => request("GET", path, { ...options, params });
export const post = (path, body, options = {}) => request("POST", path, { ...options, body });
export const patch = (path, body, options = {}) => request("PATCH", path, { ...options, body });
export const del = (path, options = {}) => request("DELETE", path, options);

// What a person should read for an error: the API's message plus what to do.
export function explain(err) {
  if (!(err instanceof ApiError)) return `Something went wrong in the dashboard: ${err.message}. Reload the page and retry.`;
  switch (err.status) {
    case 0:
      return err.message;
    case 401:
      return `Your token was not accepted (${err.message}). Sign in again.`;
    case 403:
      return `Not allowed: ${err.message}. Ask an admin if you need this.`;
    case 404:
      return `Not found: ${err.message}. It may have been deleted, or it belongs to someone else.`;
    case 409:
      return `Conflict: ${err.message}.`;
    case 422:
      return `Please correct the input: ${err.message}.`;
    case 429:
      return `Too many requests; retry in ${err.retryAfter ?? 1} s.`;
    case 503:
      return `The control plane is temporarily unavailable (${err.message}). Retry in a moment.`;
    default:
      return `The control plane answered ${err.status}: ${err.message}.`;
  }
}
