// Default models: the three pickers at the top and the banner for missing defaults.
// A choice is saved at once (no Save button), like Dify's system model settings.

import { h, clear, rerender } from "./dom.js";
import { put, tenantPath } from "./api.js";
import { state, hooks, DEFAULT_TYPES, DEFAULT_LABELS } from "./state.js";
import { createPicker } from "./picker.js";
import { toast } from "./ui.js";

const HELP = {
  llm: "Used when a request names the model `default` on chat and completions.",
  "text-embedding": "Used for `default` on embeddings. Switching it makes vectors made before " +
    "incomparable with new ones: re-embed stored data.",
  speech2text: "Used for `default` on audio transcriptions.",
};

export function buildDefaultsSection() {
  return h("section", { id: "defaults", class: "section", "aria-labelledby": "defaults-title" },
    h("div", { class: "section__head" },
      h("h2", { id: "defaults-title", tabindex: "-1", text: "Default models" }),
      h("p", { class: "muted section__lead",
        text: "The models a request gets when it asks for `default`. Only models this tenant can use now are listed." })),
    h("div", { class: "defaults__banner" }),
    h("div", { class: "defaults__pickers" }));
}

async function choose(type, option) {
  const tenant = state.tenant;
  if (!tenant) return;
  try {
    await put(tenantPath(tenant.id, "defaults", type), { model: `${option.provider}/${option.model}` });
  } catch (error) {
    if (error.status !== 401) toast(`${DEFAULT_LABELS[type]} not changed: ${error.message}`, { error: true });
    return;
  }
  toast("Modified successfully");
  await hooks.refresh(["choices"]);
}

export function renderDefaults(section) {
  const bannerSlot = section.querySelector(".defaults__banner");
  const pickersSlot = section.querySelector(".defaults__pickers");
  const choices = state.data.choices;
  const error = state.errors.choices;

  if (error || !choices) {
    clear(bannerSlot);
    clear(pickersSlot, h("p", { class: "error-text",
      text: error ? `Could not load the default models: ${error.message}` : "Loading…" }));
    return;
  }

  const missing = DEFAULT_TYPES.filter((type) => !choices[type]?.current);
  // Re-created only when the set of missing types changes, so the alert is not re-announced
  // after every unrelated refresh.
  const signature = missing.join(",");
  if (bannerSlot.dataset.signature !== signature) {
    bannerSlot.dataset.signature = signature;
    clear(bannerSlot, missing.length === 0 ? null
      : h("div", { class: "banner banner--warning" },
        h("p", { class: "banner__title", role: "alert",
          text: `No default model set for: ${missing.map((t) => DEFAULT_LABELS[t]).join(", ")}` }),
        h("p", { class: "banner__text",
          text: "Requests that ask for `default` on those endpoints fail until a model is picked below." })));
  }

  rerender(pickersSlot, () => {
    clear(pickersSlot, DEFAULT_TYPES.map((type) => createPicker({
      type,
      label: DEFAULT_LABELS[type],
      help: HELP[type],
      choice: choices[type],
      onChoose: (option) => choose(type, option),
    }).element));
  });
}
