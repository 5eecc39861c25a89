// @ts-check
/**
 * The ledger's read API from the page: the API key the user typed, kept in sessionStorage only
 * (gone when the tab closes; never in a URL, a cookie or a log line), sent as a bearer token to
 * this same origin (the page's CSP allows no other), and errors explained for people.
 */

const KEY_STORAGE = "ledger-console.api-key";

/** The key of this tab's session, or null. */
export function storedKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

/** Keeps `key` for this tab's session. @param {string} key */
export function storeKey(key) {
  sessionStorage.setItem(KEY_STORAGE, key);
}

/** Forgets the key (sign out). */
export function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
}

/** A failed call: the HTTP status and the ledger's problem+json (code, detail, request id). */
export class ApiError extends Error {
  /**
   * @param {number} status 0 when the ledger did not answer
   * @param {{ code?: string, detail?: string, title?: string }} problem
   * @param {string | null} requestId @param {string | null} retryAfter
   */
  constructor(status, problem, requestId, retryAfter) {
    super(problem.detail ?? problem.title ?? `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = problem.code ?? null;
    this.detail = problem.detail ?? null;
    this.requestId = requestId;
    this.retryAfter = retryAfter;
  }
}

/**
 * GETs a ledger path (same origin) with the stored key; the JSON body, or an ApiError.
 * @param {string} path @returns {Promise<any>}
 */
export async function get(path) {
  const key = storedKey();
  if (key === null) throw new ApiError(401, { code: "unauthorized", detail: "No API key entered." }, null, null);
  let response;
  try {
    // No cookie is ever sent or kept: the key travels in the Authorization header only.
    response = await fetch(path, {
      headers: { authorization: `Bearer ${key}`, accept: "application/json" },
      credentials: "omit",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, { detail: "The ledger did not answer." }, null, null);
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new ApiError(response.status, body, response.headers.get("request-id"), response.headers.get("retry-after"));
  }
  return body;
}

/**
 * What a failure means and what to do, for a panel that needs `scope` (docs/security.md,
 * "API keys and scopes"). A 401 and a 403 say which key and which scope.
 * @param {unknown} error @param {string} scope @param {string} what
 * @returns {{ title: string, detail: string, action?: string }}
 */
export function explain(error, scope, what) {
  if (!(error instanceof ApiError)) {
    return {
      title: `Could not show ${what}.`,
      detail: String(error),
      action: "Reload the page; if it persists, report it.",
    };
  }
  const reference = error.requestId === null ? "" : ` (request id ${error.requestId})`;
  switch (error.status) {
    case 0:
      return {
        title: "The ledger did not answer.",
        detail: "The network or the ledger is down.",
        action: "Check your connection and reload.",
      };
    case 401:
      return {
        title: "This API key was not accepted (401).",
        detail: "The ledger does not know this key: it may be mistyped, cut short, or revoked.",
        action: "Enter the whole key again (issued keys start with oel_), or ask an admin for a new one.",
      };
    case 403:
      return {
        title: `This key may not read ${what} (403).`,
        detail: error.detail ?? `It lacks the ${scope} scope.`,
        action:
          scope === "admin"
            ? "This needs an admin key that is not restricted to one account."
            : `This needs a key with the ${scope} scope for this account; ask an admin to issue one.`,
      };
    case 404:
      return {
        title: `Not found: ${what}.`,
        detail: error.detail ?? "The ledger has no such resource.",
        action: "Check the account id.",
      };
    case 429:
      return {
        title: "Too many requests (429).",
        detail: error.detail ?? "A rate limit was reached.",
        action: `Wait ${error.retryAfter ?? "a minute"} seconds, then reload.`,
      };
    default:
      return {
        title: `The ledger failed to answer (${error.status}).`,
        detail: `${error.detail ?? "An internal error."}${reference}`,
        action: "Retry in a moment; if it persists, give an operator the request id.",
      };
  }
}
