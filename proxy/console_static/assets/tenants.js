// The operator's tenant switcher with "New tenant" and "Delete tenant". A tenant
// principal never sees this: it is signed in to exactly one tenant.

import { h, clear } from "./dom.js";
import { post, del, adminPath } from "./api.js";
import { state } from "./state.js";
import { openDialog, confirmDialog, alertBox, buttonRow, field, toast } from "./ui.js";

/**
 * onSwitch(tenantId): show another tenant.
 * onChanged(tenantIdToSelect | null): the tenant list changed; reload it.
 */
export function renderTenantBar(container, { onSwitch, onChanged }) {
  const select = h("select", { class: "select", name: "tenant", disabled: state.tenants.length === 0,
    "data-focus-key": "tenant:select" },
    state.tenants.length === 0 ? h("option", { value: "", text: "No tenants yet" }) : null,
    state.tenants.map((t) => h("option", { value: t.id, text: t.name })));
  if (state.tenant) select.value = state.tenant.id;
  select.addEventListener("change", () => onSwitch(select.value));

  const newButton = h("button", { type: "button", class: "btn", text: "New tenant", "data-focus-key": "tenant:new" });
  newButton.addEventListener("click", () => newTenantDialog(newButton, onChanged));

  const deleteButton = h("button", { type: "button", class: "btn btn--danger-outline", text: "Delete tenant",
    disabled: !state.tenant, "data-focus-key": "tenant:delete" });
  deleteButton.addEventListener("click", () => deleteTenantDialog(deleteButton, onChanged));

  clear(container,
    field({ label: "Tenant", control: select, className: "field--inline" }),
    h("div", { class: "tenantbar__actions" }, newButton, deleteButton));
}

function newTenantDialog(opener, onChanged) {
  const d = openDialog({ title: "New tenant", opener });
  const input = h("input", { type: "text", name: "name", class: "input", autocomplete: "off",
    maxlength: "64", spellcheck: "false" });
  const alert = alertBox();
  const create = h("button", { type: "submit", class: "btn btn--primary", text: "Create" });
  const cancel = h("button", { type: "button", class: "btn", text: "Cancel", onClick: () => d.close() });
  const form = h("form", { class: "form", novalidate: true },
    field({ label: "Tenant name", control: input, required: true,
      help: "A short unique name, e.g. acme. Scripts and the CLI can use it instead of the id." }),
    alert.el,
    buttonRow(create, cancel));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = input.value.trim();
    if (!name) {
      alert.show("Enter a tenant name.");
      input.focus();
      return;
    }
    create.disabled = true;
    alert.hide();
    let tenant;
    try {
      tenant = await post(adminPath("tenants"), { name });
    } catch (error) {
      if (error.status === 401) return;
      alert.show(error.message);
      create.disabled = false;
      input.focus();
      return;
    }
    d.close();
    toast(`Tenant ${tenant?.name ?? name} created`);
    onChanged(tenant?.id ?? null);
  });
  d.body.append(form);
  input.focus();
}

function deleteTenantDialog(opener, onChanged) {
  const tenant = state.tenant;
  if (!tenant) return;
  confirmDialog({
    title: `Delete tenant ${tenant.name}?`,
    message: [
      `Deleting ${tenant.name} removes its provider credentials, models, default models and tokens. ` +
        "Apps that use its tokens stop working at once.",
      "This cannot be undone.",
    ],
    confirmLabel: "Delete",
    opener,
    action: () => del(adminPath("tenants", tenant.id)),
    after: () => {
      toast(`Tenant ${tenant.name} deleted`);
      onChanged(null);
    },
  });
}
