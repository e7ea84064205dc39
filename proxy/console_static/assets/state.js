// Shared, in-memory state of the signed-in page. Nothing here is persisted: a reload
// starts from GET /admin/v1/session again.

export const DEFAULT_TYPES = ["llm", "text-embedding", "speech2text"];

/** The names the pickers, the banner and the removal warnings use for each default. */
export const DEFAULT_LABELS = {
  llm: "System reasoning model",
  "text-embedding": "Embedding model",
  speech2text: "Speech-to-text model",
};

/** Short names for a model type badge or the "Model type" select. */
export const TYPE_NAMES = {
  llm: "LLM",
  "text-embedding": "Text embedding",
  speech2text: "Speech to text",
};

export const state = {
  principal: null, // {kind: "operator"} | {kind: "tenant", tenant: {id, name}}
  registry: [], // GET /admin/v1/providers, in registry order
  tenants: [],
  tenant: null, // {id, name} being shown
  // Bumped on every tenant switch and sign-out, so answers for a tenant no longer shown
  // are dropped instead of painted over the current one.
  generation: 0,
  data: {},
  errors: {},
};

/** Set by app.js; sections call it after a change to reload what they affect. */
export const hooks = {
  refresh: async () => {},
};

export function isOperator() {
  return state.principal?.kind === "operator";
}

export function providerInfo(name) {
  return state.registry.find((p) => p.name === name)
    || { name, display_name: name, per_model: false, model_types: [], credential_fields: [], catalog: {} };
}

/**
 * The tenant's credentials for an own-model provider, as GET T/providers lists them (one
 * row per named credential, "default" first): [{provider, name, weight, fields, invalid,
 * cooling_down_until}].
 */
export function credentialsOf(provider) {
  return (state.data.providers || []).filter((row) => row.provider === provider);
}

/** The name a provider's first credential gets, and the rule the server applies to names. */
export const DEFAULT_CREDENTIAL = "default";
export const CREDENTIAL_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
export const WEIGHT_MIN = 1;
export const WEIGHT_MAX = 1000;

/** When a credential's cooldown ends (unix seconds), or null when it is not cooling down now. */
export function coolingUntil(row, now = Date.now() / 1000) {
  const until = row?.cooling_down_until;
  return typeof until === "number" && Number.isFinite(until) && until > now ? until : null;
}

export function displayName(name) {
  return providerInfo(name).display_name || name;
}

/** "replicate/meta/llama-3" -> ["replicate", "meta/llama-3"]: the provider never has a "/". */
export function splitTarget(target) {
  const at = String(target).indexOf("/");
  return at < 0 ? [String(target), ""] : [target.slice(0, at), target.slice(at + 1)];
}

/** The defaults that point at a provider (any of its models, or one model). */
export function defaultsUsing(provider, model) {
  const choices = state.data.choices || {};
  const found = [];
  for (const type of DEFAULT_TYPES) {
    const current = choices[type]?.current;
    if (!current) continue;
    const [p, m] = splitTarget(current);
    if (p === provider && (model === undefined || m === model)) found.push({ type, model: m });
  }
  return found;
}
