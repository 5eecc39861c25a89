// @ts-check
/**
 * The console's shell: the sign-in form, the navigation (the URL's fragment names the view:
 * `#/operator` or `#/account/{id}`, never the key), and the two views built from the panels.
 *
 * Whether a key is an admin key is asked of the ledger once per page load, with an admin-only
 * read that changes nothing (GET /v1/admin/projection/dead-letters?limit=1): 200 admin, 403 a
 * key for accounts, 401 a key the ledger does not know.
 */
import { ApiError, explain, forgetKey, get, storedKey, storeKey } from "./api.js";
import { renderBalances } from "./balances.js";
import { h, panel, replace, showError, showLoading } from "./dom.js";
import { loadEvents } from "./events.js";
import { loadHolds } from "./holds.js";
import { loadLimits } from "./limits.js";
import { loadLots } from "./lots.js";
import { loadAlerts, loadMonitoring } from "./monitoring.js";
import { loadAccounts, loadProjection } from "./operator.js";
import { loadRefunds } from "./refunds.js";
import { Lifetime } from "./time.js";
import { loadUsage } from "./usage.js";

const main = /** @type {HTMLElement} */ (document.getElementById("main"));
const nav = /** @type {HTMLElement} */ (document.getElementById("nav"));
/** The timers of the view on screen. */
let lifetime = new Lifetime();
/** "admin" or "account" once the ledger said which; null before. */
let role = /** @type {"admin" | "account" | null} */ (null);

/** Asks the ledger what the stored key may do. */
async function detectRole() {
  try {
    await get("/v1/admin/projection/dead-letters?limit=1");
    return "admin";
  } catch (error) {
    if (error instanceof ApiError && error.status === 403) return "account";
    throw error;
  }
}

/** Learns the stored key's role; false, with the sign-in form saying why, when the ledger refused the key. */
async function learnRole() {
  try {
    role = await detectRole();
    return true;
  } catch (error) {
    forgetKey();
    showSignIn(explain(error, "ledger:read", "anything"));
    return false;
  }
}

function signOut() {
  forgetKey();
  role = null;
  if (location.hash === "") void route();
  else location.hash = "";
}

function renderNav() {
  if (storedKey() === null) {
    replace(nav);
    return;
  }
  const open = h("input", {
    type: "text",
    placeholder: "account id",
    "aria-label": "Account id",
    autocomplete: "off",
    spellcheck: "false",
  });
  const picker = h(
    "form",
    {
      class: "picker",
      onsubmit: (/** @type {Event} */ event) => {
        event.preventDefault();
        const id = /** @type {HTMLInputElement} */ (open).value.trim();
        if (id !== "") location.hash = `#/account/${encodeURIComponent(id)}`;
      },
    },
    open,
    h("button", { type: "submit" }, "Open"),
  );
  replace(
    nav,
    role === "admin" ? h("a", { href: "#/operator" }, "Accounts") : null,
    picker,
    h("button", { type: "button", class: "quiet", onclick: signOut }, "Sign out"),
  );
}

/** The sign-in form; `failure` is the explained error of the last attempt. @param {{ title: string, detail: string, action?: string }} [failure] */
function showSignIn(failure) {
  // The inputs have no name and the form posts nowhere: even without this script, the key would
  // never be submitted into a URL.
  const key = /** @type {HTMLInputElement} */ (
    h("input", { id: "key", type: "password", autocomplete: "off", required: true, spellcheck: "false" })
  );
  const account = /** @type {HTMLInputElement} */ (
    h("input", { id: "account", type: "text", autocomplete: "off", spellcheck: "false" })
  );
  const { section, body } = panel("signin", "Sign in with an API key");
  const form = h(
    "form",
    {
      method: "post",
      onsubmit: (/** @type {Event} */ event) => {
        event.preventDefault();
        void signIn(key.value.trim(), account.value.trim());
      },
    },
    h("label", { for: "key" }, "API key"),
    key,
    h("label", { for: "account" }, "Account id (needed for a key restricted to one account)"),
    account,
    h("button", { type: "submit", class: "submit" }, "Open the console"),
    h(
      "p",
      { class: "note" },
      "The key stays in this tab (sessionStorage) until you sign out or close the tab. It is sent only to this ledger.",
    ),
  );
  replace(body, form);
  if (failure !== undefined) {
    const error = h("div");
    showError(error, failure);
    body.prepend(error);
  }
  replace(main, section);
  renderNav();
}

/** @param {string} key @param {string} accountId */
async function signIn(key, accountId) {
  if (key === "") return;
  storeKey(key);
  if (!(await learnRole())) return;
  if (accountId !== "") location.hash = `#/account/${encodeURIComponent(accountId)}`;
  else if (role === "admin") location.hash = "#/operator";
  else {
    showSignIn({
      title: "Which account?",
      detail: "This key is not an admin key, so the console cannot list accounts with it.",
      action: "Enter the account id the key was issued for.",
    });
    forgetKey();
    role = null;
  }
}

/** The account view. @param {string} accountId */
async function showAccount(accountId) {
  const balances = panel("balances", "Balances");
  replace(main, h("h1", {}, "Account ", h("code", {}, accountId)), balances.section);
  showLoading(balances.body, "balances");
  const path = `/v1/accounts/${encodeURIComponent(accountId)}`;
  let account;
  try {
    account = await get(path);
  } catch (error) {
    const action =
      error instanceof ApiError && error.status === 401 ? { label: "Enter another key", run: signOut } : undefined;
    showError(balances.body, explain(error, "ledger:read", `account ${accountId}`), action);
    return;
  }
  renderBalances(balances.body, account);
  // This view's timers and late answers: a view left behind never draws into the next one.
  const life = lifetime;
  const view = { accountId, currency: account.currency, lastSeq: account.last_seq, lifetime: life };
  const lots = panel("lots", "Credit by lot, in the order it is spent");
  const limits = panel("limits", "Spend limits, this window");
  const holds = panel("holds", "Open holds");
  const usage = panel("usage", "Usage, last 30 days");
  const events = panel("events", "Recent events");
  const refunds = panel("refunds", "Refunds, last 30 days");
  main.append(lots.section, limits.section, holds.section, usage.section, events.section, refunds.section);
  const refreshBalances = () =>
    void get(path).then(
      (fresh) => !life.disposed && renderBalances(balances.body, fresh),
      () => undefined,
    );
  loadHolds(holds.body, { ...view, onChange: refreshBalances });
  void loadUsage(usage.body, view);
  void loadEvents(events.body, view);
  void loadRefunds(refunds.body, view);
  void loadLots(lots.body, view);
  void loadLimits(limits.body, view);
}

/** The operator view (admin keys). */
function showOperator() {
  const accounts = panel("accounts", "Accounts, lowest available first");
  const projection = panel("projection", "Projection");
  const alerts = panel("alerts", "Alerts");
  const monitoring = panel("monitoring", "Monitoring");
  replace(main, h("h1", {}, "Operator"), accounts.section, projection.section, alerts.section, monitoring.section);
  showLoading(projection.body, "the projection status");
  const view = {
    lifetime,
    onAsOf: (/** @type {any} */ asOf) => void loadProjection(projection.body, asOf, { lifetime }),
  };
  void loadAccounts(accounts.body, view);
  void loadAlerts(alerts.body, { lifetime });
  void loadMonitoring(monitoring.body, { lifetime });
}

/** Shows the view the fragment names. */
async function route() {
  lifetime.dispose();
  lifetime = new Lifetime();
  if (storedKey() === null) {
    showSignIn();
    return;
  }
  if (role === null && !(await learnRole())) return;
  renderNav();
  const account = /^#\/account\/(.+)$/.exec(location.hash);
  if (account !== null) await showAccount(decodeURIComponent(account[1] ?? ""));
  else if (role === "admin") showOperator();
  else {
    const { section, body } = panel("choose", "Which account?");
    replace(
      body,
      h(
        "p",
        { class: "state state-empty" },
        "This key reads accounts one at a time: enter an account id in the box above.",
      ),
    );
    replace(main, section);
  }
}

window.addEventListener("hashchange", () => void route());
void route();
