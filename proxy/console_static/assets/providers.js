// Provider cards: the configured ones first, then "To be configured". Own-model providers
// hold one or more named credentials (requests spread over them by weight): with one, the
// card keeps its plain Edit / Remove; with several, each credential has its own Edit and
// Remove. Per-model providers hold one entry per model (Add model, and Edit/Remove per entry).

import { h, clear, debounce, rerender, safeHttpUrl, fmtNumber, isoTime } from "./dom.js";
import { del, tenantPath, modelSegment } from "./api.js";
import { state, hooks, DEFAULT_LABELS, TYPE_NAMES, defaultsUsing, coolingUntil } from "./state.js";
import { confirmDialog, toast } from "./ui.js";
import { openCredentialDialog } from "./credential_dialog.js";

const AFFECTED = ["providers", "models", "quota", "choices"];

export function buildProvidersSection() {
  const search = h("input", {
    type: "search", class: "input providers__search", "aria-label": "Search providers",
    placeholder: "Search providers", autocomplete: "off", spellcheck: "false",
  });
  const section = h("section", { id: "providers", class: "section", "aria-labelledby": "providers-title" },
    h("div", { class: "section__head section__head--row" },
      h("h2", { id: "providers-title", tabindex: "-1", text: "Providers" }),
      search),
    h("div", { class: "providers__list" }));
  const refilter = debounce(() => renderProviders(section), 300);
  search.addEventListener("input", refilter);
  return section;
}

/** "gpt-4o-mini is the system reasoning model; requests for `default` will fail ..." */
export function defaultWarnings(uses) {
  return uses.map(({ type, model }) => h("p", { class: "warning" },
    `${model} is the ${DEFAULT_LABELS[type].toLowerCase()}; requests for `,
    h("code", { text: "`default`" }),
    " will fail until you pick another."));
}

function trialLine(quota) {
  if (!quota || quota.own_credential) return null;
  const unlimited = quota.limit < 0;
  const exhausted = !unlimited && quota.remaining === 0;
  return h("p", { class: "card__trial" },
    h("span", { class: "badge badge--trial", text: "Hosted trial" }), " ",
    h("span", { text: `${fmtNumber(quota.used)} / ${unlimited ? "unlimited" : fmtNumber(quota.limit)} calls used` }),
    exhausted ? [" ", h("span", { class: "danger-text", text: "quota exhausted" })] : null);
}

function fieldList(provider, fields, ...leading) {
  const items = provider.credential_fields
    .filter((f) => fields && typeof fields[f.name] === "string" && fields[f.name] !== "")
    .map((f) => [h("dt", { text: f.label || f.name }), h("dd", { class: "mono", text: fields[f.name] })]);
  items.unshift(...leading);
  return items.length ? h("dl", { class: "card__fields" }, items) : null;
}

function firstSecret(provider, fields) {
  const secret = provider.credential_fields.find((f) => f.secret && fields?.[f.name]);
  return secret ? fields[secret.name] : null;
}

/** Remove the provider's only credential: DELETE without a name, which removes them all. */
function removeProvider(provider, opener) {
  const tenant = state.tenant;
  const hosted = state.data.quota?.some((q) => q.provider === provider.name);
  confirmDialog({
    title: `Remove ${provider.display_name} credentials?`,
    message: [
      `The stored ${provider.display_name} credentials of ${tenant.name} are deleted.` +
        (hosted ? " Requests fall back to the hosted trial quota while it lasts." : ""),
      ...defaultWarnings(defaultsUsing(provider.name)),
    ],
    confirmLabel: "Remove",
    opener,
    action: () => del(tenantPath(tenant.id, "providers", provider.name)),
    after: () => {
      toast(`${provider.display_name} credentials removed`);
      hooks.refresh(AFFECTED);
    },
  });
}

/** Remove one of several credentials (DELETE ?name=): the others keep serving. */
function removeCredential(provider, credential, siblings, opener) {
  const tenant = state.tenant;
  const others = siblings.filter((c) => c.name !== credential.name);
  if (!others.length) {
    removeProvider(provider, opener);
    return;
  }
  const usable = others.filter((c) => !c.invalid);
  const names = others.map((c) => c.name).join(", ");
  confirmDialog({
    title: `Remove credential ${credential.name} of ${provider.display_name}?`,
    message: [
      `The credential ${credential.name} of ${provider.display_name} is deleted for ${tenant.name}. ` +
        `Requests go to the ${others.length === 1 ? "other credential" : "other credentials"}: ${names}.`,
      usable.length ? null : h("p", { class: "warning",
        text: `${others.length === 1 ? "That credential was" : "Those credentials were"} rejected by the vendor: ` +
          `requests to ${provider.display_name} will fail until you fix ${others.length === 1 ? "it" : "one"}.` }),
    ].filter(Boolean),
    confirmLabel: "Remove",
    opener,
    action: () => del(`${tenantPath(tenant.id, "providers", provider.name)}?${new URLSearchParams({ name: credential.name })}`),
    after: () => {
      toast(`Credential ${credential.name} removed from ${provider.display_name}`);
      hooks.refresh(AFFECTED);
    },
  });
}

/** The entry's named credentials (an entry may hold several, like a provider). */
function entryRows(provider, model) {
  return (state.data.models || []).filter((m) => m.provider === provider.name && m.model === model);
}

function removeModel(provider, entry, opener) {
  const tenant = state.tenant;
  const rows = entryRows(provider, entry.model);
  const one = rows.length > 1; // one of several: only that credential goes
  const path = `${tenantPath(tenant.id, "models", provider.name)}/${modelSegment(entry.model)}`;
  confirmDialog({
    title: one ? `Remove credential ${entry.name} of ${entry.model}?` : `Remove ${entry.model}?`,
    message: one
      ? [`Requests for ${entry.model} go to its other credential(s): ${rows.filter((r) => r.name !== entry.name)
        .map((r) => r.name).join(", ")}.`]
      : [`${entry.model} and its credentials are removed from ${provider.display_name} for ${tenant.name}.`,
        ...defaultWarnings(defaultsUsing(provider.name, entry.model))],
    confirmLabel: "Remove",
    opener,
    action: () => del(one ? `${path}?${new URLSearchParams({ name: entry.name })}` : path),
    after: () => {
      toast(`${entry.model} removed`);
      hooks.refresh(AFFECTED);
    },
  });
}

function modelItem(provider, entry) {
  const named = entryRows(provider, entry.model).length > 1 || (entry.name && entry.name !== "default");
  // One credential: the names the page always had; several: each says which one it is.
  const which = named ? `${entry.model} credential ${entry.name}` : entry.model;
  const id = `${provider.name}/${entry.model}/${entry.name || "default"}`;
  const edit = h("button", { type: "button", class: "btn btn--small", text: "Edit",
    "aria-label": `Edit ${which}`, "data-focus-key": `model-edit:${id}` });
  edit.addEventListener("click", () => openCredentialDialog({ provider, entry, opener: edit }));
  const remove = h("button", { type: "button", class: "btn btn--small btn--danger-outline", text: "Remove",
    "aria-label": `Remove ${which}`, "data-focus-key": `model-remove:${id}` });
  remove.addEventListener("click", () => removeModel(provider, entry, remove));
  const secret = firstSecret(provider, entry.fields);
  const badge = stateBadge(entry, named);
  return h("li", { class: "model-item" },
    h("div", { class: "model-item__main" },
      h("span", { class: "model-item__name mono", text: entry.model }),
      h("span", { class: "badge", text: TYPE_NAMES[entry.type] || entry.type }),
      named ? h("span", { class: "badge mono", text: entry.name }) : null,
      named && entry.weight > 1 ? h("span", { class: "badge", text: `Weight ${entry.weight}` }) : null,
      secret ? h("span", { class: "model-item__key mono muted", text: secret }) : null,
      badge),
    h("div", { class: "model-item__actions" }, edit, remove));
}

const pad2 = (n) => String(n).padStart(2, "0");

/** "14:03:09" (local time); a cooldown ending on another day also gets its date. */
function clock(unixSeconds) {
  const date = new Date(unixSeconds * 1000);
  const time = `${pad2(date.getHours())}:${pad2(date.getMinutes())}:${pad2(date.getSeconds())}`;
  if (date.toDateString() === new Date().toDateString()) return time;
  return `${date.toLocaleDateString(undefined, { month: "short", day: "numeric" })} ${time}`;
}

/** The credential's state: rejected (red), cooling down (amber), or active (only among several). */
function stateBadge(credential, several) {
  if (credential.invalid) {
    return h("span", { class: "badge badge--danger", text: "Invalid: rejected by the vendor" });
  }
  const until = coolingUntil(credential);
  if (until) {
    return h("span", { class: "badge badge--warning" }, "Cooling down until ",
      h("time", { datetime: isoTime(until), text: clock(until) }));
  }
  return several ? h("span", { class: "badge badge--ok", text: "Active" }) : null;
}

/** One of several credentials: its name, weight and state above its fields. */
function credentialHead(credential) {
  return h("div", { class: "cred__head" },
    h("span", { class: "cred__name mono", text: credential.name }),
    h("span", { class: "badge", text: `Weight ${fmtNumber(credential.weight)}` }),
    stateBadge(credential, true));
}

function credentialItem(provider, credential, siblings) {
  const id = `${provider.name}/${credential.name}`;
  const edit = h("button", { type: "button", class: "btn btn--small", text: "Edit",
    "aria-label": `Edit credential ${credential.name}`, "data-focus-key": `cred-edit:${id}` });
  edit.addEventListener("click", () => openCredentialDialog({ provider, own: credential, opener: edit }));
  const remove = h("button", { type: "button", class: "btn btn--small btn--danger-outline", text: "Remove",
    "aria-label": `Remove credential ${credential.name}`, "data-focus-key": `cred-remove:${id}` });
  remove.addEventListener("click", () => removeCredential(provider, credential, siblings, remove));
  return h("li", { class: "cred" },
    credentialHead(credential),
    fieldList(provider, credential.fields),
    h("div", { class: "cred__actions" }, edit, remove));
}

function ownStatus(credentials) {
  if (credentials.every((c) => c.invalid)) {
    return h("span", { class: "status status--error" },
      h("span", { class: "status__dot", "aria-hidden": "true" }), "Key rejected");
  }
  return h("span", { class: "status status--ok" },
    h("span", { class: "status__dot", "aria-hidden": "true" }),
    credentials.length > 1 ? `Configured: ${credentials.length} credentials` : "Configured");
}

function card(provider, credentials, entries, quota) {
  const configured = provider.per_model ? entries.length > 0 : credentials.length > 0;
  const several = credentials.length > 1;
  const actions = [];
  if (provider.per_model) {
    const add = h("button", { type: "button", class: "btn btn--primary", text: "Add model",
      "data-focus-key": `add:${provider.name}` });
    add.addEventListener("click", () => openCredentialDialog({ provider, opener: add }));
    actions.push(add);
  } else if (configured) {
    const add = h("button", { type: "button", class: "btn", text: "Add credential",
      "data-focus-key": `add-credential:${provider.name}` });
    add.addEventListener("click", () => openCredentialDialog({ provider, opener: add }));
    if (!several) {
      // One credential: the card's own Edit and Remove act on it.
      const [only] = credentials;
      const edit = h("button", { type: "button", class: "btn", text: "Edit", "data-focus-key": `edit:${provider.name}` });
      edit.addEventListener("click", () => openCredentialDialog({ provider, own: only, opener: edit }));
      const remove = h("button", { type: "button", class: "btn btn--danger-outline", text: "Remove",
        "data-focus-key": `remove:${provider.name}` });
      remove.addEventListener("click", () => removeProvider(provider, remove));
      actions.push(edit, remove);
    }
    actions.push(add);
  } else {
    const setup = h("button", { type: "button", class: "btn btn--primary", text: "Set up",
      "data-focus-key": `setup:${provider.name}` });
    setup.addEventListener("click", () => openCredentialDialog({ provider, opener: setup }));
    actions.push(setup);
  }

  const trial = trialLine(quota);
  let body;
  if (provider.per_model && entries.length) {
    body = h("ul", { class: "model-list", "aria-label": `${provider.display_name} models` },
      entries.map((entry) => modelItem(provider, entry)));
  } else if (!provider.per_model && several) {
    body = h("ul", { class: "cred-list", "aria-label": `${provider.display_name} credentials` },
      credentials.map((credential) => credentialItem(provider, credential, credentials)));
  } else if (!provider.per_model && configured) {
    const [only] = credentials;
    // The only credential: its name is one more row of its fields, its state (if any) below.
    const badge = stateBadge(only, false);
    body = h("div", { class: "cred" },
      fieldList(provider, only.fields, h("dt", { text: "Credential" }), h("dd", { class: "mono", text: only.name })),
      badge ? h("p", { class: "cred__state" }, badge) : null);
  } else if (!trial) {
    body = h("p", { class: "card__state muted", text: "Not configured" });
  }
  const keyUrl = safeHttpUrl(provider.key_url);

  return h("article", { class: ["card", configured && "card--configured"], "aria-label": provider.display_name,
    "data-focus-scope": `provider:${provider.name}` },
  h("header", { class: "card__head" },
    h("h3", { class: "card__title", text: provider.display_name }),
    !configured ? null
      : provider.per_model ? h("span", { class: "status status--ok" },
        h("span", { class: "status__dot", "aria-hidden": "true" }), "Configured")
        : ownStatus(credentials)),
  h("ul", { class: "badges" },
    (provider.model_types || []).map((t) => h("li", { class: "badge", text: TYPE_NAMES[t] || t }))),
  body || null,
  trial,
  quota?.own_credential ? h("p", { class: "muted small", text: "Uses this tenant's own key, not the hosted trial." })
    : null,
  h("footer", { class: "card__foot" },
    keyUrl ? h("a", { href: keyUrl, target: "_blank", rel: "noopener noreferrer", class: "link",
      text: "Get your API key" }) : h("span"),
    h("div", { class: "card__actions" }, actions)));
}

// A shown cooldown ends on its own: repaint the cards then (the data itself is not reloaded).
let cooldownTimer = null;

function scheduleCooldownRepaint(section) {
  clearTimeout(cooldownTimer);
  cooldownTimer = null;
  const now = Date.now() / 1000;
  const ends = (state.data.providers || []).map((c) => coolingUntil(c, now)).filter(Boolean);
  if (!ends.length) return;
  const ms = Math.min(...ends) * 1000 - Date.now() + 250;
  if (ms >= 2 ** 31 - 1) return;
  const generation = state.generation;
  cooldownTimer = setTimeout(() => {
    cooldownTimer = null;
    if (section.isConnected && generation === state.generation) renderProviders(section);
  }, Math.max(ms, 0));
}

export function renderProviders(section) {
  const listSlot = section.querySelector(".providers__list");
  const search = section.querySelector(".providers__search");
  const failed = ["providers", "models", "quota"].map((k) => state.errors[k]).find(Boolean);
  if (!state.registry.length || !state.data.providers || !state.data.models) {
    clear(listSlot, h("p", { class: failed ? "error-text" : "muted",
      text: failed ? `Could not load the providers: ${failed.message}` : "Loading…" }));
    return;
  }
  const ownByName = new Map();
  for (const row of state.data.providers) {
    if (!ownByName.has(row.provider)) ownByName.set(row.provider, []);
    ownByName.get(row.provider).push(row);
  }
  const quotaByName = new Map((state.data.quota || []).map((q) => [q.provider, q]));
  const needle = search.value.trim().toLowerCase();
  const configured = [];
  const unconfigured = [];
  for (const provider of state.registry) {
    if (needle && !provider.display_name.toLowerCase().includes(needle) && !provider.name.includes(needle)) continue;
    const entries = state.data.models.filter((m) => m.provider === provider.name);
    const credentials = provider.per_model ? [] : (ownByName.get(provider.name) || []);
    const element = card(provider, credentials, entries, quotaByName.get(provider.name));
    ((provider.per_model ? entries.length : credentials.length) ? configured : unconfigured).push(element);
  }

  rerender(listSlot, () => {
    const parts = [];
    if (failed) parts.push(h("p", { class: "error-text", text: `Some provider details could not load: ${failed.message}` }));
    if (!configured.length && !unconfigured.length) {
      parts.push(h("p", { class: "muted empty", text: `No provider matches "${search.value.trim()}".` }));
    } else {
      if (configured.length) parts.push(h("div", { class: "cards" }, configured));
      else if (!needle) parts.push(h("p", { class: "muted empty", text: "No provider is set up yet: pick one below." }));
      if (unconfigured.length) {
        parts.push(h("h3", { class: "subhead", id: "to-configure-title", text: "To be configured" }),
          h("div", { class: "cards", "aria-labelledby": "to-configure-title", role: "group" }, unconfigured));
      }
    }
    clear(listSlot, parts);
  });
  scheduleCooldownRepaint(section);
}
