// Provider cards: the configured ones first, then "To be configured". Own-model providers
// hold one credential (Set up / Edit / Remove); per-model providers hold one entry per
// model (Add model, and Edit/Remove per entry).

import { h, clear, debounce, rerender, safeHttpUrl, fmtNumber } from "./dom.js";
import { del, tenantPath, modelSegment } from "./api.js";
import { state, hooks, DEFAULT_LABELS, TYPE_NAMES, defaultsUsing } from "./state.js";
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

function fieldList(provider, fields) {
  const items = provider.credential_fields
    .filter((f) => fields && typeof fields[f.name] === "string" && fields[f.name] !== "")
    .map((f) => [h("dt", { text: f.label || f.name }), h("dd", { class: "mono", text: fields[f.name] })]);
  return items.length ? h("dl", { class: "card__fields" }, items) : null;
}

function firstSecret(provider, fields) {
  const secret = provider.credential_fields.find((f) => f.secret && fields?.[f.name]);
  return secret ? fields[secret.name] : null;
}

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

function removeModel(provider, entry, opener) {
  const tenant = state.tenant;
  confirmDialog({
    title: `Remove ${entry.model}?`,
    message: [
      `${entry.model} and its credentials are removed from ${provider.display_name} for ${tenant.name}.`,
      ...defaultWarnings(defaultsUsing(provider.name, entry.model)),
    ],
    confirmLabel: "Remove",
    opener,
    action: () => del(`${tenantPath(tenant.id, "models", provider.name)}/${modelSegment(entry.model)}`),
    after: () => {
      toast(`${entry.model} removed`);
      hooks.refresh(AFFECTED);
    },
  });
}

function modelItem(provider, entry) {
  const id = `${provider.name}/${entry.model}`;
  const edit = h("button", { type: "button", class: "btn btn--small", text: "Edit",
    "aria-label": `Edit ${entry.model}`, "data-focus-key": `model-edit:${id}` });
  edit.addEventListener("click", () => openCredentialDialog({ provider, entry, opener: edit }));
  const remove = h("button", { type: "button", class: "btn btn--small btn--danger-outline", text: "Remove",
    "aria-label": `Remove ${entry.model}`, "data-focus-key": `model-remove:${id}` });
  remove.addEventListener("click", () => removeModel(provider, entry, remove));
  const secret = firstSecret(provider, entry.fields);
  return h("li", { class: "model-item" },
    h("div", { class: "model-item__main" },
      h("span", { class: "model-item__name mono", text: entry.model }),
      h("span", { class: "badge", text: TYPE_NAMES[entry.type] || entry.type }),
      secret ? h("span", { class: "model-item__key mono muted", text: secret }) : null),
    h("div", { class: "model-item__actions" }, edit, remove));
}

function card(provider, own, entries, quota) {
  const configured = provider.per_model ? entries.length > 0 : Boolean(own);
  const actions = [];
  if (provider.per_model) {
    const add = h("button", { type: "button", class: "btn btn--primary", text: "Add model",
      "data-focus-key": `add:${provider.name}` });
    add.addEventListener("click", () => openCredentialDialog({ provider, opener: add }));
    actions.push(add);
  } else if (configured) {
    const edit = h("button", { type: "button", class: "btn", text: "Edit", "data-focus-key": `edit:${provider.name}` });
    edit.addEventListener("click", () => openCredentialDialog({ provider, own, opener: edit }));
    const remove = h("button", { type: "button", class: "btn btn--danger-outline", text: "Remove",
      "data-focus-key": `remove:${provider.name}` });
    remove.addEventListener("click", () => removeProvider(provider, remove));
    actions.push(edit, remove);
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
  } else if (!provider.per_model && own) {
    body = fieldList(provider, own.fields) || h("p", { class: "muted", text: "Configured" });
  } else if (!trial) {
    body = h("p", { class: "card__state muted", text: "Not configured" });
  }
  const keyUrl = safeHttpUrl(provider.key_url);

  return h("article", { class: ["card", configured && "card--configured"], "aria-label": provider.display_name,
    "data-focus-scope": `provider:${provider.name}` },
  h("header", { class: "card__head" },
    h("h3", { class: "card__title", text: provider.display_name }),
    configured ? h("span", { class: "status status--ok" },
      h("span", { class: "status__dot", "aria-hidden": "true" }), "Configured") : null),
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

export function renderProviders(section) {
  const listSlot = section.querySelector(".providers__list");
  const search = section.querySelector(".providers__search");
  const failed = ["providers", "models", "quota"].map((k) => state.errors[k]).find(Boolean);
  if (!state.registry.length || !state.data.providers || !state.data.models) {
    clear(listSlot, h("p", { class: failed ? "error-text" : "muted",
      text: failed ? `Could not load the providers: ${failed.message}` : "Loading…" }));
    return;
  }
  const ownByName = new Map(state.data.providers.map((p) => [p.provider, p]));
  const quotaByName = new Map((state.data.quota || []).map((q) => [q.provider, q]));
  const needle = search.value.trim().toLowerCase();
  const configured = [];
  const unconfigured = [];
  for (const provider of state.registry) {
    if (needle && !provider.display_name.toLowerCase().includes(needle) && !provider.name.includes(needle)) continue;
    const entries = state.data.models.filter((m) => m.provider === provider.name);
    const own = ownByName.get(provider.name);
    const element = card(provider, own, entries, quotaByName.get(provider.name));
    ((provider.per_model ? entries.length : own) ? configured : unconfigured).push(element);
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
}
