import { ApiError, api, setToken } from "../api";
import { h, replace } from "../dom";
import { navigate } from "../router";

/** The sign-in form; `next` is the page to open once signed in. */
export function signInPage(root: HTMLElement, next = "/sessions"): void {
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "current-password",
    required: true,
    spellcheck: "false",
  });
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const submit = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "card signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in"),
    h("p", {}, "Paste the admin token that ", h("code", {}, "streamspace up"), " printed."),
    h("label", { for: "token" }, "Admin token"),
    input,
    error,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    submit.disabled = true;
    error.hidden = true;
    try {
      await api.check(token);
      setToken(token);
      navigate(next);
    } catch (e) {
      error.textContent =
        e instanceof ApiError && e.status === 401 ? "That token is not valid." : String((e as Error).message);
      error.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });
  replace(root, form);
  input.focus();
}
