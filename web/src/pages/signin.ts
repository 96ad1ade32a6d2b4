import { ApiError, User, api } from "../api";
import { h, replace } from "../dom";

/** The sign-in form; `signedIn` is called with the user once the server has set the cookie. */
export function signInPage(root: HTMLElement, signedIn: (user: User) => void): void {
  const username = h("input", {
    id: "username",
    name: "username",
    type: "text",
    autocomplete: "username",
    autocapitalize: "none",
    required: true,
    spellcheck: "false",
  });
  const password = h("input", {
    id: "password",
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  // Shown once the server says the account also needs a one-time code (after the right password).
  const totp = h("input", {
    id: "totp",
    name: "totp",
    type: "text",
    autocomplete: "one-time-code",
    autocapitalize: "none",
    spellcheck: "false",
  });
  const totpLabel = h("label", { for: "totp" }, "One-time code (or a recovery code)");
  const totpField = h("div", { id: "totp-field", hidden: true }, totpLabel, totp);
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const submit = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "card signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in"),
    h(
      "p",
      {},
      "The first time, sign in as ",
      h("code", {}, "admin"),
      " with the password ",
      h("code", {}, "streamspace up"),
      " printed.",
    ),
    h("label", { for: "username" }, "Username"),
    username,
    h("label", { for: "password" }, "Password"),
    password,
    totpField,
    error,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = username.value.trim();
    if (!name || !password.value) return;
    submit.disabled = true;
    error.hidden = true;
    try {
      const code = totpField.hidden ? undefined : totp.value.trim() || undefined;
      const { user } = await api.login(name, password.value, code);
      signedIn(user);
    } catch (e) {
      if (e instanceof ApiError && e.code === "totp_required") {
        totpField.hidden = false;
        error.textContent = "Enter the code from your authenticator app.";
        error.hidden = false;
        totp.focus();
        return;
      }
      error.textContent =
        e instanceof ApiError && e.status === 401
          ? totpField.hidden
            ? "Wrong username or password."
            : "Wrong username, password or code."
          : String((e as Error).message);
      error.hidden = false;
      password.value = "";
      totp.value = "";
      password.focus();
    } finally {
      submit.disabled = false;
    }
  });
  replace(root, form);
  username.focus();
}
