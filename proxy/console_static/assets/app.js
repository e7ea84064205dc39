// Entry point: decides between the sign-in view and the console, loads the shown
// tenant's data and re-renders the sections a change affects.

import { h, clear, rerender } from "./dom.js";
import { get, list, adminPath, tenantPath, usagePath, onUnauthorized, setCsrfToken } from "./api.js";
import { state, hooks, isOperator } from "./state.js";
import { currentSession, renderSignIn, signOut } from "./session.js";
import { toast, clearToasts } from "./ui.js";
import { renderTenantBar } from "./tenants.js";
import { buildDefaultsSection, renderDefaults } from "./defaults.js";
import { buildProvidersSection, renderProviders } from "./providers.js";
import { buildTokensSection, renderTokens } from "./tokens.js";
import { buildLimitsSection, renderLimits } from "./limits.js";
import { buildUsageSection, renderUsage, last30Days } from "./usage.js";

const root = document.getElementById("app");
let sections = null;
let expiryTimer = null;

const LOADERS = {
  providers: (t) => get(tenantPath(t, "providers")).then(list),
  models: (t) => get(tenantPath(t, "models")).then(list),
  quota: (t) => get(tenantPath(t, "quota")).then(list),
  choices: (t) => get(tenantPath(t, "defaults", "choices")),
  tokens: (t) => get(tenantPath(t, "tokens")).then(list),
  limits: (t) => get(tenantPath(t, "limits")).then(list),
  usageDay: (t) => get(usagePath(t, last30Days()[0], "day")),
  usageModel: (t) => get(usagePath(t, last30Days()[0], "model")),
};
const ALL = Object.keys(LOADERS);

function renderSections(keys) {
  if (!sections) return;
  const touched = (...names) => names.some((n) => keys.includes(n));
  if (touched("choices")) renderDefaults(sections.defaults);
  if (touched("providers", "models", "quota", "registry")) renderProviders(sections.providers);
  if (touched("tokens")) renderTokens(sections.tokens);
  if (touched("limits")) renderLimits(sections.limits);
  const usageParts = [touched("usageDay") && "chart", touched("usageModel") && "models", touched("quota") && "quota"];
  if (usageParts.some(Boolean)) renderUsage(sections.usage, usageParts.filter(Boolean));
}

/** Reload some of the shown tenant's data and repaint what depends on it. */
async function refresh(keys = ALL) {
  const tenant = state.tenant;
  if (!tenant) return;
  const generation = state.generation;
  const results = await Promise.allSettled(keys.map((key) => LOADERS[key](tenant.id)));
  if (generation !== state.generation) return; // another tenant, or signed out, meanwhile
  let unauthorized = false;
  keys.forEach((key, i) => {
    const result = results[i];
    if (result.status === "fulfilled") {
      state.data[key] = result.value;
      delete state.errors[key];
    } else if (result.reason?.status === 401) {
      unauthorized = true;
    } else {
      state.errors[key] = result.reason;
    }
  });
  if (!unauthorized) renderSections(keys);
}
hooks.refresh = refresh;

// -- views --------------------------------------------------------------------------------

function closeDialogs() {
  for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
}

function resetState() {
  state.generation += 1;
  state.principal = null;
  state.registry = [];
  state.tenants = [];
  state.tenant = null;
  state.data = {};
  state.errors = {};
  sections = null;
  clearTimeout(expiryTimer);
}

function showSignIn(message = "") {
  closeDialogs();
  resetState();
  setCsrfToken(null);
  renderSignIn(root, { message, onSignedIn: startApp });
}

// Any 401 outside sign-in means the session is gone (expired, revoked, signed out elsewhere).
onUnauthorized(() => {
  if (state.principal) showSignIn("Your session has ended. Sign in again.");
});

function renderHeader() {
  const header = root.querySelector(".topbar");
  const bar = header.querySelector(".tenantbar");
  if (isOperator()) {
    rerender(bar, () => renderTenantBar(bar, { onSwitch: switchTenant, onChanged: loadTenants }));
  } else {
    bar.remove();
  }
}

function renderMain() {
  const main = root.querySelector("main");
  if (!state.tenant) {
    sections = null;
    clear(main, h("section", { class: "section empty-state" },
      h("h2", { tabindex: "-1", text: "No tenant yet" }),
      h("p", { class: "muted", text: isOperator()
        ? "Create a tenant with New tenant to set up its model providers, default models and tokens."
        : "This console token has no tenant." })));
    return;
  }
  sections = {
    defaults: buildDefaultsSection(),
    providers: buildProvidersSection(),
    tokens: buildTokensSection(),
    limits: buildLimitsSection(),
    usage: buildUsageSection(),
  };
  clear(main, sections.defaults, sections.providers, sections.tokens, sections.limits, sections.usage);
  renderSections([...ALL, "registry"]); // paints "Loading…" placeholders
}

function switchTenant(id) {
  const tenant = state.tenants.find((t) => t.id === id) || null;
  if (tenant?.id === state.tenant?.id) return;
  showTenant(tenant);
}

function showTenant(tenant) {
  state.generation += 1;
  state.tenant = tenant ? { id: tenant.id, name: tenant.name } : null;
  state.data = {};
  state.errors = {};
  if (isOperator()) renderHeader();
  renderMain();
  if (state.tenant) refresh(ALL);
}

async function loadTenants(selectId = null) {
  const generation = state.generation;
  try {
    state.tenants = list(await get(adminPath("tenants")));
  } catch (error) {
    if (error.status === 401 || generation !== state.generation) return;
    toast(`Could not load the tenants: ${error.message}`, { error: true });
    state.tenants = [];
  }
  if (generation !== state.generation) return;
  const target = state.tenants.find((t) => t.id === selectId)
    || state.tenants.find((t) => t.id === state.tenant?.id)
    || state.tenants[0] || null;
  showTenant(target);
}

function buildShell() {
  const principal = state.principal;
  const who = isOperator() ? "Operator" : (principal?.tenant?.name || "Tenant");
  const signOutButton = h("button", { type: "button", class: "btn btn--ghost", text: "Sign out" });
  signOutButton.addEventListener("click", async () => {
    signOutButton.disabled = true;
    try {
      await signOut();
    } catch {
      // Signed out locally either way; the cookie expires on its own.
    }
    showSignIn();
    toast("Signed out");
  });
  clear(root,
    h("header", { class: "topbar" },
      h("div", { class: "topbar__inner" },
        h("h1", { class: "brand" }, "modelport ", h("span", { class: "brand__sub", text: "console" })),
        h("div", { class: "tenantbar" }),
        h("div", { class: "who" },
          h("span", { class: "who__role", text: isOperator() ? "Signed in as" : "Tenant" }),
          h("strong", { class: "who__name", text: who }),
          signOutButton))),
    h("main", { id: "main", class: "main", tabindex: "-1" }));
}

/**
 * At the announced expiry, ask the server rather than assume: if the session was extended
 * meanwhile, keep going; if it is gone, back to sign-in with a reason.
 */
function scheduleExpiryCheck(expiresAt) {
  clearTimeout(expiryTimer);
  if (typeof expiresAt !== "number") return;
  const ms = expiresAt * 1000 - Date.now() + 1000;
  // setTimeout cannot wait longer than ~24.8 days; a later expiry is caught by a 401.
  if (ms <= 0 || ms >= 2 ** 31 - 1) return;
  const generation = state.generation;
  expiryTimer = setTimeout(async () => {
    let session = null;
    try {
      session = await currentSession();
    } catch {
      return; // the server is unreachable: the next call will tell
    }
    if (generation !== state.generation) return;
    if (session) scheduleExpiryCheck(session.expires_at);
    else showSignIn("Your session expired. Sign in again.");
  }, ms);
}

async function startApp(session) {
  resetState();
  state.principal = session?.principal || null;
  if (!state.principal) {
    showSignIn("The server sent no principal for this session.");
    return;
  }
  const generation = state.generation;
  scheduleExpiryCheck(session.expires_at);
  buildShell();
  renderHeader();
  root.querySelector("main").focus();
  try {
    state.registry = list(await get(adminPath("providers")));
  } catch (error) {
    if (error.status === 401) return;
    toast(`Could not load the provider registry: ${error.message}`, { error: true });
  }
  if (generation !== state.generation) return;
  if (isOperator()) await loadTenants();
  else showTenant(state.principal.tenant || null);
}

async function boot() {
  let session = null;
  try {
    session = await currentSession();
  } catch (error) {
    renderSignIn(root, { message: error.message, onSignedIn: startApp });
    return;
  }
  if (session) startApp(session);
  else showSignIn();
}

clearToasts();
boot();
