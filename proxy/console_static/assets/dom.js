// DOM building without innerHTML: every string a tenant, a vendor or the server sends
// ends up in a text node or an attribute value, never parsed as markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function applyAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") {
      el.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    } else if (key === "text") {
      el.textContent = String(value);
    } else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "style" || key.startsWith("on") || key === "innerHTML") {
      // The CSP forbids inline styles and handlers; refusing them here catches mistakes early.
      throw new Error(`dom: refusing attribute ${key}`);
    } else if (key === "value" && "value" in el) {
      el.value = String(value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

function appendChildren(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** h("button", {class: "btn", onClick: fn}, "Save") */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  appendChildren(el, children);
  // Attributes after children so that a <select>'s value can pick one of its options.
  applyAttrs(el, attrs);
  return el;
}

export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  appendChildren(el, children);
  applyAttrs(el, attrs);
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren();
  appendChildren(el, children);
  return el;
}

let counter = 0;
export function uid(prefix) {
  counter += 1;
  return `${prefix}-${counter}`;
}

export function debounce(fn, ms) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => { timer = null; fn(...args); }, ms);
  };
  wrapped.cancel = () => { clearTimeout(timer); timer = null; };
  return wrapped;
}

/** A label that is read by screen readers but not shown. */
export function srOnly(text) {
  return h("span", { class: "sr-only", text });
}

export function checkIcon() {
  return s("svg", { class: "icon icon--check", viewBox: "0 0 16 16", "aria-hidden": "true", focusable: "false" },
    s("path", { d: "M3 8.5l3 3 7-7", fill: "none", "stroke-width": "2", "stroke-linecap": "round",
      "stroke-linejoin": "round" }));
}

/** Only http(s) links: a javascript: URL from the server must never become clickable. */
export function safeHttpUrl(value) {
  if (typeof value !== "string" || !value) return null;
  try {
    const url = new URL(value);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
  } catch {
    return null;
  }
}

const numberFormat = new Intl.NumberFormat();
export function fmtNumber(n) {
  return typeof n === "number" && Number.isFinite(n) ? numberFormat.format(n) : "—";
}

export function fmtTime(unixSeconds) {
  if (!unixSeconds) return "—";
  const date = new Date(unixSeconds * 1000);
  return date.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit" });
}

export function isoTime(unixSeconds) {
  return unixSeconds ? new Date(unixSeconds * 1000).toISOString() : "";
}

// Re-rendering replaces the buttons a keyboard user was on. Elements carry a stable
// data-focus-key (and sit in a data-focus-scope), so focus can land on the new copy, or on
// the nearest survivor when the old control is gone (e.g. "Remove" became "Set up").
export function focusSnapshot(active = document.activeElement) {
  if (!active || active === document.body) return null;
  return {
    element: active,
    key: active.dataset?.focusKey || null,
    scope: active.closest?.("[data-focus-scope]")?.dataset.focusScope || null,
    section: active.closest?.("section[id]")?.id || null,
  };
}

export function restoreFocus(snapshot) {
  if (!snapshot) return;
  if (snapshot.element.isConnected && !snapshot.element.closest("dialog:not([open])")) {
    if (document.activeElement !== snapshot.element) snapshot.element.focus();
    return;
  }
  const esc = (v) => CSS.escape(v);
  const target = (snapshot.key && document.querySelector(`[data-focus-key="${esc(snapshot.key)}"]`))
    || (snapshot.scope && document.querySelector(`[data-focus-scope="${esc(snapshot.scope)}"] button:not([disabled])`))
    || (snapshot.section && document.querySelector(`#${esc(snapshot.section)} h2`));
  if (target) target.focus();
}

/** Rebuild a container's content while keeping keyboard focus where the user was. */
export function rerender(container, build) {
  const snapshot = container.contains(document.activeElement) ? focusSnapshot() : null;
  build();
  if (snapshot) restoreFocus(snapshot);
}
