// The credential dialog, generated from the provider's credential_fields. Credentials are
// checked live by a real vendor call (debounced, once every required field is filled) and
// again by the server on Save, which stores nothing when the check fails.
//
// Editing never shows a stored secret: its input starts empty with the masked value as a
// placeholder, and keep_secrets:true tells the server to keep a secret left empty.
//
// A provider, or a per-model entry, may hold several named credentials (requests spread by
// weight): the dialog also asks for the credential's name (fixed once stored) and its weight.

import { h, s, debounce, checkIcon, clear, uid } from "./dom.js";
import { post, put, tenantPath } from "./api.js";
import { state, hooks, TYPE_NAMES, credentialsOf, DEFAULT_CREDENTIAL, CREDENTIAL_NAME_RE, WEIGHT_MIN,
  WEIGHT_MAX } from "./state.js";
import { openDialog, buttonRow, field, toast } from "./ui.js";

const VALIDATE_DELAY_MS = 800;
const AFFECTED = ["providers", "models", "quota", "choices"];

function lockIcon() {
  return s("svg", { class: "icon", viewBox: "0 0 16 16", "aria-hidden": "true", focusable: "false" },
    s("rect", { x: "3", y: "7", width: "10", height: "7", rx: "1.5", fill: "currentColor" }),
    s("path", { d: "M5 7V5a3 3 0 016 0v2", fill: "none", stroke: "currentColor", "stroke-width": "1.6" }));
}

/** A message under a field, tied to its control by aria-describedby and aria-invalid. */
function fieldError(wrapper, control) {
  const el = h("p", { class: "field__error", id: uid("error"), hidden: true });
  wrapper.append(el);
  const described = control.getAttribute("aria-describedby");
  control.setAttribute("aria-describedby", [described, el.id].filter(Boolean).join(" "));
  return (message) => {
    el.textContent = message || "";
    el.hidden = !message;
    if (message) control.setAttribute("aria-invalid", "true");
    else control.removeAttribute("aria-invalid");
  };
}

function dialogTitle(provider, perModel, own, others) {
  const display = provider.display_name;
  if (perModel) return `Add model to ${display}`;
  // The only credential keeps the provider's own "Set up" title, as before several existed.
  if (!others.length) return `Set up ${display}`;
  return own ? `Edit credential ${own.name} of ${display}` : `Add a credential to ${display}`;
}

/**
 * provider: a registry entry. own: {provider, name, weight, fields} when editing one of an
 * own-model provider's credentials (none: a new one). entry: {provider, model, type, fields}
 * when editing a per-model entry.
 */
export function openCredentialDialog({ provider, own = null, entry = null, opener }) {
  const tenant = state.tenant;
  const perModel = Boolean(provider.per_model);
  const editing = perModel ? Boolean(entry) : Boolean(own);
  const stored = (perModel ? entry?.fields : own?.fields) || {};
  // The other credentials (of the provider, or of the same per-model entry): whether this is
  // the first, and names already taken.
  let modelInput = null;
  const modelNow = () => (modelInput ? modelInput.value.trim() : entry?.model ?? "");
  const othersNow = () => (perModel
    ? (state.data.models || []).filter((m) => m.provider === provider.name && m.model === modelNow()
      && m.name !== entry?.name)
    : credentialsOf(provider.name).filter((c) => c.name !== own?.name));
  const others = othersNow();
  let closed = false;
  let sequence = 0; // answers to older validation requests are ignored
  let saving = false;

  const d = openDialog({
    title: dialogTitle(provider, perModel, own, others),
    opener,
    className: "dialog--form",
    onClose: () => {
      closed = true;
      sequence += 1;
      validateLater.cancel();
    },
  });

  // -- fields --------------------------------------------------------------------------
  const rows = [];
  let typeSelect = null;
  if (perModel) {
    modelInput = h("input", { type: "text", name: "model", class: "input mono", autocomplete: "off",
      spellcheck: "false", value: entry?.model ?? "", readonly: editing });
    typeSelect = h("select", { name: "type", class: "select" },
      (provider.model_types || []).map((t) => h("option", { value: t, text: TYPE_NAMES[t] || t })));
    if (entry?.type) typeSelect.value = entry.type;
    rows.push(
      field({ label: "Model name", control: modelInput, required: true,
        help: editing ? "To use another model name, add it as a new model."
          : "The model or deployment name as the vendor knows it." }),
      field({ label: "Model type", control: typeSelect, required: true }));
  }

  let nameInput = null;
  let weightInput = null;
  let showNameError = () => {};
  let showWeightError = () => {};
  {
    const current = own ?? entry;
    nameInput = h("input", { type: "text", name: "name", class: "input mono", autocomplete: "off",
      spellcheck: "false", autocapitalize: "off", maxlength: "64", pattern: "[A-Za-z0-9][A-Za-z0-9_.\\-]{0,63}",
      value: current ? (current.name ?? DEFAULT_CREDENTIAL) : (others.length ? "" : DEFAULT_CREDENTIAL),
      placeholder: others.length && !current ? "e.g. backup" : null, readonly: editing });
    weightInput = h("input", { type: "number", name: "weight", class: "input input--narrow", inputmode: "numeric",
      min: String(WEIGHT_MIN), max: String(WEIGHT_MAX), step: "1", value: String(current?.weight ?? 1) });
    // Fixed once stored: no "required" mark on a read-only field.
    const nameField = field({ label: "Credential name", control: nameInput, required: !editing,
      help: editing ? "A credential keeps its name: to use another one, add a new credential."
        : "Letters, digits, '.', '_' or '-', up to 64 characters, starting with a letter or digit." });
    const weightField = field({ label: "Weight", control: weightInput, required: true,
      help: "Share of requests when the provider has several credentials" });
    showNameError = fieldError(nameField, nameInput);
    showWeightError = fieldError(weightField, weightInput);
    rows.push(nameField, weightField);
  }

  const inputs = [];
  for (const spec of provider.credential_fields || []) {
    const keeps = editing && spec.secret && Boolean(stored[spec.name]);
    const input = h("input", {
      type: spec.secret ? "password" : "text",
      name: spec.name,
      class: ["input", spec.secret && "mono"],
      // new-password: keep browsers from filling a saved site password into a vendor key field.
      autocomplete: spec.secret ? "new-password" : "off",
      spellcheck: "false",
      autocapitalize: "off",
      placeholder: keeps ? stored[spec.name] : (spec.placeholder || null),
      value: editing && !spec.secret ? (stored[spec.name] ?? "") : "",
    });
    // Descriptions are written without a final full stop; a second sentence needs one between.
    const described = spec.description && keeps ? spec.description.replace(/[.\s]*$/, ".") : spec.description;
    const help = [described, keeps ? "Leave empty to keep the stored value." : null].filter(Boolean).join(" ");
    // A kept secret is already there, so the field is not required for this save.
    rows.push(field({ label: spec.label || spec.name, control: input, required: Boolean(spec.required) && !keeps,
      help: help || undefined }));
    inputs.push({ spec, input, keeps });
  }

  // -- validation status -----------------------------------------------------------------
  const status = h("div", { class: "validation", "aria-live": "polite" });
  const note = h("p", { class: "dialog__note" }, lockIcon(),
    h("span", { text: "Your key is encrypted with this tenant's own RSA key pair (OAEP) and stored only " +
      "in encrypted form; this page never shows it again." }));

  let statusKind = "idle";
  function showStatus(kind, message) {
    statusKind = kind;
    note.classList.toggle("is-error", kind === "error");
    if (kind === "idle") clear(status);
    else if (kind === "busy") clear(status, h("p", { class: "validation__busy" }, h("span", { class: "spinner", "aria-hidden": "true" }), message));
    else if (kind === "ok") clear(status, h("p", { class: "validation__ok" }, checkIcon(), "Credentials are valid"));
    else clear(status, h("p", { class: "validation__error", role: "alert", text: message }));
  }

  function missingRequired() {
    const missing = [];
    if (perModel && !modelInput.value.trim()) missing.push(modelInput);
    if (!nameInput.value.trim()) missing.push(nameInput);
    if (weightInput.value.trim() === "" && !weightInput.validity.badInput) missing.push(weightInput);
    for (const { spec, input, keeps } of inputs) {
      if (spec.required && !keeps && !input.value.trim()) missing.push(input);
    }
    return missing;
  }

  function nameProblem() {
    const name = nameInput.value.trim();
    if (!name || editing) return null;
    if (!CREDENTIAL_NAME_RE.test(name)) {
      return "A credential's name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.";
    }
    if (othersNow().some((c) => c.name === name)) {
      const owner = perModel ? modelNow() : provider.display_name;
      return `${owner} already has a credential named ${name}: edit it, or pick another name.`;
    }
    return null;
  }

  function weightValue() {
    const text = weightInput.value.trim();
    return /^\d+$/.test(text) ? Number(text) : NaN;
  }

  function weightProblem() {
    if (weightInput.value.trim() === "" && !weightInput.validity.badInput) return null; // reported as missing
    const weight = weightValue();
    return weight >= WEIGHT_MIN && weight <= WEIGHT_MAX ? null
      : `The weight is a whole number from ${WEIGHT_MIN} to ${WEIGHT_MAX}.`;
  }

  /** Problems the page can tell without the server: [{control, message}]. */
  function localProblems() {
    const found = [];
    const name = nameProblem();
    if (name) found.push({ control: nameInput, message: name });
    const weight = weightProblem();
    if (weight) found.push({ control: weightInput, message: weight });
    return found;
  }

  function showLocalProblems() {
    showNameError(nameProblem());
    showWeightError(weightProblem());
  }

  function payload() {
    const credentials = {};
    for (const { spec, input } of inputs) {
      const value = input.value.trim();
      if (value) credentials[spec.name] = value;
    }
    const body = perModel
      ? { provider: provider.name, model: modelInput.value.trim(), type: typeSelect.value, credentials,
        name: nameInput.value.trim() }
      : { credentials, name: nameInput.value.trim() };
    body.keep_secrets = editing;
    return body;
  }

  async function validateNow() {
    if (closed || saving || missingRequired().length || localProblems().length) return;
    const mine = ++sequence;
    showStatus("busy", "Validating...");
    try {
      const path = perModel ? tenantPath(tenant.id, "models", "validate")
        : tenantPath(tenant.id, "providers", provider.name, "validate");
      await post(path, payload());
      if (mine === sequence && !closed) showStatus("ok");
    } catch (error) {
      if (error.status === 401 || mine !== sequence || closed) return;
      showStatus("error", error.message);
    }
  }
  const validateLater = debounce(validateNow, VALIDATE_DELAY_MS);

  const form = h("form", { class: "form", novalidate: true }, rows, status, note);
  form.addEventListener("input", (event) => {
    if (saving) return;
    showLocalProblems();
    const ready = !missingRequired().length && !localProblems().length;
    if (event.target === weightInput || event.target === nameInput) {
      // The vendor's check does not depend on these: a result (or a check under way) stands.
      if (statusKind === "ok" || statusKind === "busy") return;
      showStatus("idle");
      if (ready) validateLater();
      else validateLater.cancel();
      return;
    }
    sequence += 1; // whatever was in flight no longer describes the form
    showStatus("idle");
    if (ready) validateLater();
    else validateLater.cancel();
  });

  // -- save ------------------------------------------------------------------------------
  const save = h("button", { type: "submit", class: "btn btn--primary", text: "Save" });
  const cancel = h("button", { type: "button", class: "btn", text: "Cancel", onClick: () => d.close() });
  form.append(buttonRow(save, cancel));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (saving) return;
    const missing = missingRequired();
    if (missing.length) {
      const names = missing.map((el) => el.labels?.[0]?.firstChild?.textContent || el.name);
      showStatus("error", `Fill in the required fields: ${names.join(", ")}.`);
      missing[0].focus();
      return;
    }
    const problems = localProblems();
    if (problems.length) {
      showLocalProblems();
      showStatus("error", problems.map((p) => p.message).join(" "));
      problems[0].control.focus();
      return;
    }
    validateLater.cancel();
    sequence += 1;
    saving = true;
    save.disabled = true;
    showStatus("busy", "Saving...");
    const body = { ...payload(), validate: true };
    body.weight = weightValue();
    try {
      if (perModel) await post(tenantPath(tenant.id, "models"), body);
      else await put(tenantPath(tenant.id, "providers", provider.name), body);
    } catch (error) {
      saving = false;
      save.disabled = false;
      if (error.status === 401) return;
      if (!closed) showStatus("error", error.message);
      return;
    }
    saving = false;
    d.close();
    toast(perModel ? `${body.model} saved to ${provider.display_name}`
      : othersNow().length ? `Credential ${body.name} of ${provider.display_name} saved`
        : `${provider.display_name} credentials saved`);
    hooks.refresh(AFFECTED);
  });

  d.body.append(form);
  // A new credential beside others needs a name first; otherwise the key is what to type.
  const first = perModel && !editing ? modelInput
    : !perModel && !editing && others.length ? nameInput
      : (inputs[0]?.input || modelInput || nameInput);
  if (first) first.focus();
  return d;
}
