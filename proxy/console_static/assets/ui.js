// Shared widgets: toasts, native modal dialogs, confirmations and labelled form fields.

import { h, uid, clear, focusSnapshot, restoreFocus } from "./dom.js";

let toastTimer = null;

/**
 * One toast at a time: a newer message replaces the older one, so the live region never
 * reads out a stale pile. Errors use role="alert" and stay longer.
 */
export function toast(message, { error = false } = {}) {
  const region = document.getElementById("toasts");
  if (!region) return;
  const el = h("div", { class: ["toast", error && "toast--error"], role: error ? "alert" : "status", text: message });
  clear(region, el);
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.remove(), error ? 10000 : 6000);
}

export function clearToasts() {
  clearTimeout(toastTimer);
  const region = document.getElementById("toasts");
  if (region) region.replaceChildren();
}

/** A hidden role="alert" paragraph; show(message) reveals it so it is announced. */
export function alertBox(className = "alert") {
  const el = h("p", { class: className, role: "alert", hidden: true });
  return {
    el,
    show(message) { el.textContent = message; el.hidden = false; },
    hide() { el.hidden = true; el.textContent = ""; },
  };
}

/**
 * A native <dialog> opened with showModal(): the browser traps focus, Escape fires
 * "cancel" and closes it. The dialog is removed from the document when closed (so its
 * labels never linger for assistive tech), and focus goes back to the opener, or to
 * the control that replaced it if the page re-rendered meanwhile.
 */
export function openDialog({ title, opener = document.activeElement, onClose, className }) {
  const titleId = uid("dialog-title");
  const heading = h("h2", { id: titleId, class: "dialog__title", text: title });
  const body = h("div", { class: "dialog__body" });
  const dialog = h("dialog", { class: ["dialog", className], "aria-labelledby": titleId }, heading, body);
  const snapshot = opener ? focusSnapshot(opener) : null;
  dialog.addEventListener("close", () => {
    dialog.remove();
    try {
      if (onClose) onClose();
    } finally {
      restoreFocus(snapshot);
    }
  });
  document.body.append(dialog);
  dialog.showModal();
  return {
    dialog,
    body,
    heading,
    close() { if (dialog.open) dialog.close(); },
    get open() { return dialog.open; },
  };
}

export function buttonRow(...buttons) {
  return h("div", { class: "dialog__actions" }, ...buttons);
}

/**
 * A confirmation with a destructive button. `action` runs the request; on failure the
 * server's message shows in the dialog and it stays open; on success it closes and
 * `after` runs (typically a refresh).
 */
export function confirmDialog({ title, message, confirmLabel, opener, action, after }) {
  const d = openDialog({ title, opener, className: "dialog--confirm" });
  const alert = alertBox();
  const confirm = h("button", { type: "button", class: "btn btn--danger", text: confirmLabel });
  const cancel = h("button", { type: "button", class: "btn", text: "Cancel", autofocus: true,
    onClick: () => d.close() });
  confirm.addEventListener("click", async () => {
    confirm.disabled = true;
    alert.hide();
    try {
      await action();
    } catch (error) {
      if (error.status === 401) return; // the app is going back to sign-in
      alert.show(error.message);
      confirm.disabled = false;
      return;
    }
    d.close();
    if (after) after();
  });
  d.body.append(...[message].flat().map((m) => (typeof m === "string" ? h("p", { text: m }) : m)),
    alert.el, buttonRow(confirm, cancel));
  // autofocus is honoured only when present at showModal() time, so focus by hand.
  cancel.focus();
  return d;
}

/**
 * A labelled control. The visible <label> may carry a "*" for required fields, but the
 * control's accessible name comes from aria-labelledby on the bare label text, so it
 * is exactly "API key", not "API key *"; `required` tells assistive tech the rest.
 */
export function field({ label, control, required = false, help, className }) {
  if (!control.id) control.id = uid("field");
  const textId = uid("label");
  control.setAttribute("aria-labelledby", textId);
  if (required) control.required = true;
  const helpEl = help ? h("p", { class: "help", id: uid("help"), text: help }) : null;
  if (helpEl) control.setAttribute("aria-describedby", helpEl.id);
  return h("div", { class: ["field", className] },
    h("label", { for: control.id, class: "field__label" },
      h("span", { id: textId, text: label }),
      required ? h("span", { class: "req", "aria-hidden": "true", text: " *" }) : null),
    control,
    helpEl);
}
