// Tokens of the tenant: list, create (shown once), revoke. API tokens call /v1; console
// tokens sign in to this page for one tenant.

import { h, clear, rerender, fmtTime, isoTime } from "./dom.js";
import { post, del, tenantPath, adminPath } from "./api.js";
import { state, hooks } from "./state.js";
import { openDialog, confirmDialog, alertBox, buttonRow, field, toast } from "./ui.js";

const KIND_NAMES = { api: "API token", console: "Console token" };

export function buildTokensSection() {
  const create = h("button", { type: "button", class: "btn btn--primary", text: "Create token",
    "data-focus-key": "token:create" });
  create.addEventListener("click", () => createTokenDialog(create));
  // Unlike the other sections this one is not named by its heading: a "Tokens" label would
  // also answer to the sign-in "Token" label query and make that field ambiguous to find.
  return h("section", { id: "tokens", class: "section" },
    h("div", { class: "section__head section__head--row" },
      h("h2", { id: "tokens-title", tabindex: "-1", text: "Tokens" }),
      create),
    h("p", { class: "muted section__lead",
      text: "API tokens authenticate calls to /v1. Console tokens sign in to this page for this tenant only." }),
    h("div", { class: "tokens__table" }));
}

function tokenLabel(token) {
  return token.name || token.hint || token.id;
}

function revokeToken(token, opener) {
  confirmDialog({
    title: `Revoke ${tokenLabel(token)}?`,
    message: [`Anything using ${tokenLabel(token)} (${token.hint || token.id}) is refused from now on.`,
      "This cannot be undone; create a new token instead."],
    confirmLabel: "Revoke",
    opener,
    action: () => del(adminPath("tokens", token.id)),
    after: () => {
      toast(`${tokenLabel(token)} revoked`);
      hooks.refresh(["tokens"]);
    },
  });
}

export function renderTokens(section) {
  const slot = section.querySelector(".tokens__table");
  const tokens = state.data.tokens;
  if (state.errors.tokens || !tokens) {
    clear(slot, h("p", { class: state.errors.tokens ? "error-text" : "muted",
      text: state.errors.tokens ? `Could not load the tokens: ${state.errors.tokens.message}` : "Loading…" }));
    return;
  }
  if (!tokens.length) {
    rerender(slot, () => clear(slot, h("p", { class: "muted empty", text: "No tokens yet." })));
    return;
  }
  const rows = tokens.map((token) => {
    let action = null;
    if (!token.revoked) {
      action = h("button", { type: "button", class: "btn btn--small btn--danger-outline", text: "Revoke",
        "aria-label": `Revoke ${tokenLabel(token)}`, "data-focus-key": `revoke:${token.id}` });
      action.addEventListener("click", () => revokeToken(token, action));
    }
    return h("tr", { class: token.revoked ? "is-revoked" : null },
      h("th", { scope: "row", text: token.name || "(unnamed)" }),
      h("td", { text: KIND_NAMES[token.kind] || token.kind || "API token" }),
      h("td", { class: "mono", text: token.hint || "" }),
      h("td", {}, h("time", { datetime: isoTime(token.created_at), text: fmtTime(token.created_at) })),
      h("td", {}, token.last_used_at
        ? h("time", { datetime: isoTime(token.last_used_at), text: fmtTime(token.last_used_at) }) : "Never"),
      h("td", {}, h("span", { class: ["state", token.revoked ? "state--revoked" : "state--active"],
        text: token.revoked ? "Revoked" : "Active" })),
      h("td", { class: "cell-actions" }, action));
  });
  rerender(slot, () => clear(slot,
    // The wrapper scrolls sideways on narrow screens (Chromium makes such scrollers keyboard
    // focusable). No accessible name on it: a label with "token" in it would be one more match
    // for anything looking for the sign-in "Token" field.
    h("div", { class: "table-scroll" },
      h("table", { class: "table" },
        h("thead", {}, h("tr", {},
          ["Name", "Kind", "Hint", "Created", "Last used", "State"].map((t) => h("th", { scope: "col", text: t })),
          h("th", { scope: "col" }, h("span", { class: "sr-only", text: "Actions" })))),
        h("tbody", {}, rows)))));
}

function createTokenDialog(opener) {
  const tenant = state.tenant;
  let created = false;
  const d = openDialog({
    title: "Create token",
    opener,
    onClose: () => {
      // The token was shown once; refresh so the list includes it (the DOM holding it is gone).
      if (created) hooks.refresh(["tokens"]);
    },
  });
  const name = h("input", { type: "text", name: "name", class: "input", autocomplete: "off", maxlength: "100" });
  const kind = h("select", { name: "kind", class: "select" },
    h("option", { value: "api", text: "API token" }),
    h("option", { value: "console", text: "Console token" }));
  const alert = alertBox();
  const create = h("button", { type: "submit", class: "btn btn--primary", text: "Create" });
  const cancel = h("button", { type: "button", class: "btn", text: "Cancel", onClick: () => d.close() });
  const form = h("form", { class: "form", novalidate: true },
    field({ label: "Name", control: name, required: true, help: "Where the token is used, e.g. laptop or ci." }),
    field({ label: "Kind", control: kind,
      help: "API tokens call the gateway; console tokens sign in to this page for this tenant." }),
    alert.el,
    buttonRow(create, cancel));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!name.value.trim()) {
      alert.show("Enter a name for the token.");
      name.focus();
      return;
    }
    create.disabled = true;
    alert.hide();
    let result;
    try {
      result = await post(tenantPath(tenant.id, "tokens"), { name: name.value.trim(), kind: kind.value });
    } catch (error) {
      create.disabled = false;
      if (error.status !== 401) alert.show(error.message);
      return;
    }
    created = true;
    if (d.open) showOnce(d, result, kind.value);
  });
  d.body.append(form);
  name.focus();
}

/** The token is in the page only inside this dialog, and only until it closes. */
function showOnce(d, result, kind) {
  d.heading.textContent = `${KIND_NAMES[kind] || "Token"} created`;
  const tokenInput = h("input", { type: "text", name: "new-token", class: "input mono", readonly: true,
    autocomplete: "off", spellcheck: "false", value: result?.token || "" });
  const copied = h("p", { class: "validation__ok small", "aria-live": "polite" });
  const copy = h("button", { type: "button", class: "btn", text: "Copy" });
  copy.addEventListener("click", async () => {
    try {
      if (!navigator.clipboard?.writeText) throw new Error("no clipboard");
      await navigator.clipboard.writeText(tokenInput.value);
      copied.textContent = "Copied to the clipboard.";
    } catch {
      // No clipboard API (plain http, permissions): select it so Ctrl+C / Cmd+C copies it.
      tokenInput.focus();
      tokenInput.select();
      copied.textContent = "Selected: press Ctrl+C (or Cmd+C) to copy.";
    }
  });
  const done = h("button", { type: "button", class: "btn btn--primary", text: "Done", onClick: () => d.close() });
  d.dialog.addEventListener("close", () => { tokenInput.value = ""; });
  clear(d.body,
    h("p", { class: "warning", text: "Copy this token now: it is shown only once and cannot be recovered." }),
    h("div", { class: "copy-row" },
      field({ label: "New token", control: tokenInput, className: "copy-row__field" }),
      copy),
    copied,
    buttonRow(done));
  tokenInput.focus();
  tokenInput.select();
}
