// A select-only picker: a button that opens a popup with a search box and a listbox of
// models grouped by provider. Focus stays in the search box; the arrow keys move the
// active option (aria-activedescendant), Enter chooses, Escape closes back to the button.

import { h, s, uid } from "./dom.js";
import { splitTarget, displayName } from "./state.js";

function chevron() {
  return s("svg", { class: "icon picker__chevron", viewBox: "0 0 16 16", "aria-hidden": "true", focusable: "false" },
    s("path", { d: "M4 6l4 4 4-4", fill: "none", "stroke-width": "2", "stroke-linecap": "round",
      "stroke-linejoin": "round" }));
}

/**
 * choice: {current, usable, options: [{provider, display_name, model, source}]}
 * onChoose(option) runs after the popup closed; it saves and re-renders.
 */
export function createPicker({ type, label, help, choice, onChoose }) {
  const labelId = uid("picker-label");
  const valueId = uid("picker-value");
  const current = choice?.current || null;
  const removed = Boolean(current) && choice?.usable === false;
  const options = Array.isArray(choice?.options) ? choice.options : [];
  const [currentProvider, currentModel] = current ? splitTarget(current) : [null, null];

  const value = h("span", { id: valueId, class: ["picker__value", removed && "is-removed", !current && "is-empty"] },
    current
      ? [h("span", { class: "picker__model", text: currentModel }),
        h("span", { class: "picker__provider", text: displayName(currentProvider) })]
      : "Select a model");
  const removedEl = removed
    ? h("p", { class: "picker__removed", id: uid("picker-removed"), text: "removed: pick another model" }) : null;
  const helpEl = help ? h("p", { class: "help", id: uid("picker-help"), text: help }) : null;
  const describedBy = [valueId, removedEl?.id, helpEl?.id].filter(Boolean).join(" ");

  const button = h("button", {
    type: "button", class: ["picker__button", removed && "is-removed"], "aria-haspopup": "listbox",
    "aria-expanded": "false", "aria-labelledby": labelId, "aria-describedby": describedBy,
    "data-focus-key": `picker:${type}`,
  }, value, chevron());

  const wrapper = h("div", { class: "picker", "data-type": type },
    h("span", { class: "picker__label", id: labelId, text: label }),
    h("div", { class: "picker__anchor" }, button),
    removedEl, helpEl);

  let popup = null;
  let onOutside = null;

  function close({ refocus = false } = {}) {
    if (!popup) return;
    popup.remove();
    popup = null;
    button.setAttribute("aria-expanded", "false");
    document.removeEventListener("pointerdown", onOutside, true);
    if (refocus) button.focus();
  }

  function open() {
    if (popup) return;
    const listId = uid("picker-list");
    const search = h("input", {
      type: "search", class: "input picker__search", "aria-label": "Search models",
      placeholder: "Search models", autocomplete: "off", spellcheck: "false",
      "aria-controls": listId, "aria-autocomplete": "list",
    });
    const listbox = h("div", { role: "listbox", id: listId, class: "picker__list", "aria-label": "Available models" });
    const empty = h("p", { class: "picker__empty", "aria-live": "polite" });
    popup = h("div", { class: "picker__popup" }, search, listbox, empty);
    // Clicks inside the popup (group labels, scrollbar) must not pull focus out of the search box.
    popup.addEventListener("mousedown", (event) => { if (event.target !== search) event.preventDefault(); });
    button.after(popup);
    button.setAttribute("aria-expanded", "true");

    let matches = [];
    let optionEls = [];
    let active = -1;

    function setActive(index) {
      optionEls.forEach((el, i) => el.classList.toggle("is-active", i === index));
      active = index;
      if (index >= 0 && optionEls[index]) {
        search.setAttribute("aria-activedescendant", optionEls[index].id);
        optionEls[index].scrollIntoView({ block: "nearest" });
      } else {
        search.removeAttribute("aria-activedescendant");
      }
    }

    function render() {
      const query = search.value.trim();
      const needle = query.toLowerCase();
      const found = options.filter((o) => !needle || o.model.toLowerCase().includes(needle)
        || String(o.display_name || o.provider).toLowerCase().includes(needle));
      listbox.replaceChildren();
      optionEls = [];
      const groups = new Map();
      for (const option of found) {
        const key = option.display_name || displayName(option.provider);
        if (!groups.has(key)) groups.set(key, []);
        groups.get(key).push(option);
      }
      // In on-screen order, so that index i of `matches` is the i-th option element.
      matches = [...groups.values()].flat();
      for (const [groupName, groupOptions] of groups) {
        const groupLabelId = uid("picker-group");
        const group = h("div", { role: "group", class: "picker__group", "aria-labelledby": groupLabelId },
          h("div", { class: "picker__group-label", id: groupLabelId, role: "presentation", text: groupName }));
        for (const option of groupOptions) {
          const selected = current === `${option.provider}/${option.model}`;
          const el = h("div", {
            role: "option", id: uid("picker-option"), class: "picker__option",
            // The accessible name is the model id alone; the trial badge is decoration.
            "aria-label": option.model, "aria-selected": selected ? "true" : "false",
          },
          h("span", { class: "picker__option-model", text: option.model }),
          option.source === "hosted" ? h("span", { class: "badge badge--trial", text: "Trial" }) : null);
          const index = optionEls.length;
          el.addEventListener("mousemove", () => { if (active !== index) setActive(index); });
          el.addEventListener("click", () => choose(option));
          optionEls.push(el);
          group.append(el);
        }
        listbox.append(group);
      }
      if (matches.length === 0) {
        empty.textContent = query ? `No model found for "${query}"`
          : "No model available yet: set up a provider below (or ask for a hosted trial).";
        empty.hidden = false;
        listbox.hidden = true;
      } else {
        empty.textContent = "";
        empty.hidden = true;
        listbox.hidden = false;
      }
      const selectedIndex = matches.findIndex((o) => current === `${o.provider}/${o.model}`);
      setActive(needle ? (matches.length ? 0 : -1) : selectedIndex);
    }

    function choose(option) {
      close({ refocus: true });
      if (option && !(current === `${option.provider}/${option.model}` && !removed)) onChoose(option);
    }

    search.addEventListener("input", render);
    search.addEventListener("keydown", (event) => {
      const n = optionEls.length;
      if (event.key === "ArrowDown") {
        event.preventDefault();
        if (n) setActive(active < 0 ? 0 : (active + 1) % n);
      } else if (event.key === "ArrowUp") {
        event.preventDefault();
        if (n) setActive(active <= 0 ? n - 1 : active - 1);
      } else if (event.key === "Enter") {
        event.preventDefault();
        if (active >= 0) choose(matches[active]);
        else if (matches.length === 1) choose(matches[0]);
      } else if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        close({ refocus: true });
      } else if (event.key === "Tab") {
        close();
      }
    });

    onOutside = (event) => {
      if (!wrapper.isConnected) {
        document.removeEventListener("pointerdown", onOutside, true);
        return;
      }
      if (!wrapper.contains(event.target)) close();
    };
    document.addEventListener("pointerdown", onOutside, true);

    render();
    search.focus();
  }

  button.addEventListener("click", () => (popup ? close({ refocus: true }) : open()));
  button.addEventListener("keydown", (event) => {
    if ((event.key === "ArrowDown" || event.key === "ArrowUp") && !popup) {
      event.preventDefault();
      open();
    }
  });
  wrapper.addEventListener("focusout", (event) => {
    if (popup && event.relatedTarget && !wrapper.contains(event.relatedTarget)) close();
  });

  return { element: wrapper, close };
}
