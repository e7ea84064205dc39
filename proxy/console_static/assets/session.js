// Sign-in and sign-out. The token typed here is exchanged for an HttpOnly session cookie
// and dropped: it is never stored, logged, or put in a URL, and the input is emptied.

import { h, clear } from "./dom.js";
import { request, post, del, setCsrfToken, SESSION_PATH } from "./api.js";
import { alertBox, field } from "./ui.js";

/** GET /admin/v1/session: the current session, or null when signed out (401). */
export async function currentSession() {
  try {
    const session = await request("GET", SESSION_PATH, undefined, { signIn: true });
    setCsrfToken(session?.csrf_token);
    return session;
  } catch (error) {
    if (error.status === 401) return null;
    throw error;
  }
}

export async function signOut() {
  try {
    await del(SESSION_PATH, { signIn: true });
  } finally {
    setCsrfToken(null);
  }
}

/** Render the sign-in view into `root`; `onSignedIn(session)` runs after a good token. */
export function renderSignIn(root, { message, onSignedIn }) {
  const alert = alertBox("alert alert--error");
  const input = h("input", {
    type: "password", name: "token", autocomplete: "off", spellcheck: "false",
    autocapitalize: "off", class: "input",
  });
  const button = h("button", { type: "submit", class: "btn btn--primary btn--block", text: "Sign in" });
  const form = h("form", { class: "signin__form", novalidate: true },
    field({ label: "Token", control: input, required: true,
      help: "An admin token (mpa-…) or a tenant's console token (mpc-…). API tokens cannot sign in here." }),
    alert.el,
    button);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) {
      alert.show("Enter a token.");
      input.focus();
      return;
    }
    button.disabled = true;
    alert.hide();
    let session;
    try {
      session = await post(SESSION_PATH, { token }, { signIn: true });
    } catch (error) {
      button.disabled = false;
      alert.show(error.status === 401
        ? (error.message || "That token is not valid for the console.") : error.message);
      input.select();
      return;
    }
    input.value = "";
    setCsrfToken(session?.csrf_token);
    onSignedIn(session);
  });

  clear(root,
    h("main", { id: "main", class: "signin", tabindex: "-1" },
      h("div", { class: "signin__card" },
        h("h1", { class: "signin__title" }, "modelport ", h("span", { class: "brand__sub", text: "console" })),
        h("p", { class: "muted", text: "Sign in to manage model providers, default models, tokens and usage." }),
        form)));
  if (message) alert.show(message);
  input.focus();
}
