import { ApiError, SignInProvider, User, api } from "../api";
import { h, replace } from "../dom";

/**
 * The sign-in form, and one button per single sign-on provider; `signedIn` is called with the
 * user once the server has set the cookie. A provider brings the browser back to `returnTo`.
 */
export function signInPage(root: HTMLElement, signedIn: (user: User) => void, returnTo = "/sessions"): void {
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
    returnTo.startsWith("/shared/")
      ? h(
          "p",
          { class: "notice", id: "signin-for-share", role: "status" },
          "Someone shared a session with you: sign in to open it, and you will be taken there.",
        )
      : null,
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
  // Back from a provider whose sign-in was refused: say why, once.
  const ssoError = new URLSearchParams(window.location.search).get("sso_error");
  if (ssoError) {
    error.textContent = SSO_ERRORS[ssoError] ?? `Single sign-on failed (${ssoError}).`;
    error.hidden = false;
    error.dataset.ssoError = ssoError;
    history.replaceState(null, "", "/signin");
  }
  // Shown only when providers are configured; the password form works without them.
  api
    .providers()
    .then((providers) => {
      if (providers.length > 0) form.append(providerButtons(providers, returnTo));
    })
    .catch(() => {});
}

/** What a refused single sign-on (`/signin?sso_error=CODE`) means to the person signing in. */
const SSO_ERRORS: Record<string, string> = {
  oidc_invalid_state: "That sign-in expired or was not started here. Please start again.",
  oidc_denied: "The sign-in provider did not let you in.",
  oidc_code_refused: "The sign-in provider refused to finish the sign-in. Please start again.",
  oidc_invalid_token: "The sign-in provider's answer could not be trusted. Ask an administrator.",
  oidc_invalid_claims: "The sign-in provider did not say who you are. Ask an administrator.",
  unauthorized: "This account is disabled.",
};

/** Full-page links: the provider's own sign-in page takes over, then sends the browser back. */
function providerButtons(providers: SignInProvider[], returnTo: string): HTMLElement {
  return h(
    "div",
    { class: "sso", role: "group", "aria-label": "Single sign-on" },
    h("p", {}, "Or sign in with"),
    ...providers.map((p) =>
      h(
        "a",
        {
          class: "button",
          id: `sso-${p.id}`,
          href: `${p.login_url}?return_to=${encodeURIComponent(returnTo)}`,
        },
        p.display_name,
      ),
    ),
  );
}
