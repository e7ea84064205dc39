// Rate limits of the tenant: requests and tokens per minute, for the whole tenant or one
// API token, for every model or one (GET/PUT/DELETE T/limits). Setting the same token and
// model again replaces that limit.

import { h, clear, rerender, fmtNumber } from "./dom.js";
import { put, del, tenantPath } from "./api.js";
import { state, hooks } from "./state.js";
import { openDialog, alertBox, buttonRow, field, toast } from "./ui.js";

const MAX_PER_MINUTE = 1e12; // the API's ceiling

export function buildLimitsSection() {
  const add = h("button", { type: "button", class: "btn btn--primary", text: "Add limit",
    "data-focus-key": "limit:add" });
  add.addEventListener("click", () => addLimitDialog(add));
  return h("section", { id: "limits", class: "section", "aria-labelledby": "limits-title" },
    h("div", { class: "section__head section__head--row" },
      h("h2", { id: "limits-title", tabindex: "-1", text: "Rate limits" }),
      add),
    h("p", { class: "muted section__lead",
      text: "Requests and tokens per UTC minute, shown as used / limit. A request over a limit is answered 429 "
        + "and never reaches the provider." }),
    h("div", { class: "limits__table" }));
}

function whoLabel(limit) {
  return limit.token_id ? (limit.token_name || limit.token_id) : "Whole tenant";
}

function limitLabel(limit) {
  return `${whoLabel(limit)}, ${limit.model || "every model"}`;
}

function perMinute(value, used) {
  if (value === null || value === undefined) return "—";
  return `${fmtNumber(used || 0)} / ${fmtNumber(value)}`;
}

async function removeLimit(limit, button) {
  button.disabled = true;
  const query = new URLSearchParams();
  if (limit.token_id) query.set("token_id", limit.token_id);
  if (limit.model) query.set("model", limit.model);
  const suffix = query.toString() ? `?${query}` : "";
  try {
    await del(`${tenantPath(state.tenant.id, "limits")}${suffix}`);
  } catch (error) {
    button.disabled = false;
    if (error.status !== 401) toast(`Could not remove the limit: ${error.message}`, { error: true });
    return;
  }
  toast(`Limit removed: ${limitLabel(limit)}`);
  hooks.refresh(["limits"]);
}

export function renderLimits(section) {
  const slot = section.querySelector(".limits__table");
  const limits = state.data.limits;
  if (state.errors.limits || !limits) {
    clear(slot, h("p", { class: state.errors.limits ? "error-text" : "muted",
      text: state.errors.limits ? `Could not load the rate limits: ${state.errors.limits.message}` : "Loading…" }));
    return;
  }
  if (!limits.length) {
    rerender(slot, () => clear(slot, h("p", { class: "muted empty", text: "No rate limits: requests are not limited." })));
    return;
  }
  const rows = limits.map((limit) => {
    const key = `${limit.token_id || ""}/${limit.model || ""}`;
    const remove = h("button", { type: "button", class: "btn btn--small btn--danger-outline", text: "Remove",
      "aria-label": `Remove limit ${limitLabel(limit)}`, "data-focus-key": `limit-remove:${key}` });
    remove.addEventListener("click", () => removeLimit(limit, remove));
    return h("tr", {},
      h("th", { scope: "row", text: whoLabel(limit) }),
      h("td", { class: limit.model ? "mono" : null, text: limit.model || "Every model" }),
      h("td", { text: perMinute(limit.rpm, limit.requests_this_minute) }),
      h("td", { text: perMinute(limit.tpm, limit.tokens_this_minute) }),
      h("td", { class: "cell-actions" }, remove));
  });
  rerender(slot, () => clear(slot,
    h("div", { class: "table-scroll" },
      h("table", { class: "table" },
        h("caption", { class: "sr-only", text: "Rate limits: used this minute / limit" }),
        h("thead", {}, h("tr", {},
          ["Applies to", "Model", "Requests per minute", "Tokens per minute"]
            .map((t) => h("th", { scope: "col", text: t })),
          h("th", { scope: "col" }, h("span", { class: "sr-only", text: "Actions" })))),
        h("tbody", {}, rows)))));
}

/** A whole number from 1 up, null when empty, undefined when invalid. */
function readPerMinute(input) {
  const raw = input.value.trim();
  if (raw === "") return null;
  const n = Number(raw);
  return Number.isInteger(n) && n >= 1 && n <= MAX_PER_MINUTE ? n : undefined;
}

function addLimitDialog(opener) {
  const tenant = state.tenant;
  const d = openDialog({ title: "Add limit", opener });
  const apiTokens = (state.data.tokens || []).filter((t) => (t.kind || "api") === "api" && !t.revoked);
  const token = h("select", { name: "token", class: "select" },
    h("option", { value: "", text: "Whole tenant (every API token)" }),
    apiTokens.map((t) => h("option", { value: t.id, text: t.name || t.hint || t.id })));
  const model = h("input", { type: "text", name: "model", class: "input mono", autocomplete: "off",
    spellcheck: "false", placeholder: "openai/gpt-4o-mini" });
  const number = (name) => h("input", { type: "number", name, class: "input", min: "1", step: "1",
    inputmode: "numeric", autocomplete: "off" });
  const rpm = number("rpm");
  const tpm = number("tpm");
  const alert = alertBox();
  const save = h("button", { type: "submit", class: "btn btn--primary", text: "Save" });
  const cancel = h("button", { type: "button", class: "btn", text: "Cancel", onClick: () => d.close() });
  const form = h("form", { class: "form", novalidate: true },
    field({ label: "Token", control: token, help: "The whole tenant, or one of its API tokens." }),
    field({ label: "Model", control: model, help: "provider/model; leave empty for every model." }),
    field({ label: "Requests per minute", control: rpm, help: "Empty: no request limit." }),
    field({ label: "Tokens per minute", control: tpm,
      help: "Prompt and completion tokens. Empty: no token limit." }),
    alert.el,
    buttonRow(save, cancel));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const requests = readPerMinute(rpm);
    const tokens = readPerMinute(tpm);
    if (requests === undefined || tokens === undefined) {
      alert.show("Enter whole numbers from 1, or leave a field empty.");
      (requests === undefined ? rpm : tpm).focus();
      return;
    }
    if (requests === null && tokens === null) {
      alert.show("Enter requests per minute, tokens per minute, or both.");
      rpm.focus();
      return;
    }
    save.disabled = true;
    alert.hide();
    try {
      await put(tenantPath(tenant.id, "limits"), { token_id: token.value || null,
        model: model.value.trim() || null, rpm: requests, tpm: tokens });
    } catch (error) {
      save.disabled = false;
      if (error.status !== 401) alert.show(error.message);
      return;
    }
    d.close();
    toast("Limit saved");
    hooks.refresh(["limits"]);
  });
  d.body.append(form);
  token.focus();
}
