// Sign-in with an API token. The token is checked with GET /v1/me before it
// is kept (in sessionStorage, see api.js); it is never put in the URL.

import * as api from "../api.js";
import { clear, h } from "../dom.js";

export function mount(main, { reason, onSignedIn }) {
  const input = h("input", {
    id: "token", name: "token", type: "password", autocomplete: "off", spellcheck: "false", required: true,
    "aria-describedby": "token-help token-error",
  });
  const problem = h("p", { id: "token-error", class: "field-error", role: "alert" });
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "signin card", "aria-labelledby": "signin-title", novalidate: true },
    h("h1", { id: "signin-title" }, "Sign in to A4C"),
    reason ? h("p", { class: "notice", role: "status" }, reason) : null,
    h("label", { for: "token" }, "API token"),
    input,
    h(
      "p",
      { id: "token-help", class: "help" },
      "Paste a token issued for you (an admin creates one with POST /v1/users/{id}/tokens or ",
      h("code", {}, "a4c-controlplane create-admin"),
      "). It is kept only in this browser tab and forgotten when the tab closes.",
    ),
    problem,
    button,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (!value) {
      problem.textContent = "Enter your API token.";
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    button.disabled = true;
    button.textContent = "Checking…";
    problem.textContent = "";
    try {
      const me = await api.get("/v1/me", undefined, { bearer: value });
      api.setToken(value);
      input.value = "";
      await onSignedIn(me);
    } catch (err) {
      problem.textContent = err instanceof api.ApiError && err.status === 401
        ? `This token was not accepted: ${err.message}. Check it was copied whole, or ask an admin for a new one.`
        : api.explain(err);
      input.setAttribute("aria-invalid", "true");
      input.focus();
    } finally {
      button.disabled = false;
      button.textContent = "Sign in";
    }
  });
  clear(main, form);
  input.focus();
}
