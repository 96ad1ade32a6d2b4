import encodeQR from "qr";
import { ApiError, api } from "../api";
import { clearMessages, h, replace, showError } from "../dom";

/**
 * Two-step sign-in for the signed-in user: turn one-time codes on (a QR code of the secret for an
 * authenticator app, or the secret to type in, confirmed with a code from it; the recovery codes
 * are shown once) or off (needs the password).
 */
export function totpPage(root: HTMLElement): void {
  const state = h("div", { id: "totp-state", "aria-live": "polite" });
  replace(
    root,
    h("h1", {}, "Two-step sign-in"),
    h("p", {}, "With it on, signing in also asks for a code from an authenticator app (or a recovery code)."),
    state,
  );

  const refresh = async () => {
    const { user } = await api.me();
    if (!user.has_password) {
      replace(state, h("p", {}, "Your account signs in without a password, so one-time codes do not apply."));
    } else if (user.totp_enabled) {
      replace(state, disableForm());
    } else {
      const start = h("button", { type: "button", id: "totp-start" }, "Turn on");
      start.addEventListener("click", () => void enrol());
      replace(state, h("p", {}, "Two-step sign-in is off."), start);
    }
  };

  async function enrol(): Promise<void> {
    clearMessages();
    try {
      const { secret, otpauth_uri } = await api.startTotp();
      const code = h("input", { id: "totp-code", type: "text", autocomplete: "one-time-code", required: true });
      const form = h(
        "form",
        { class: "form-row", "aria-label": "Confirm the code" },
        h("div", {}, h("label", { for: "totp-code" }, "Code from the app"), code),
        h("button", { type: "submit" }, "Turn on"),
      );
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        clearMessages();
        try {
          const { recovery_codes } = await api.confirmTotp(code.value.trim());
          replace(
            state,
            h(
              "div",
              { class: "card", role: "status" },
              h("p", {}, "Two-step sign-in is on. Recovery codes, each usable once instead of a code — copy them now, they are not shown again:"),
              h("ul", { id: "recovery-codes" }, ...recovery_codes.map((c) => h("li", {}, h("code", {}, c)))),
            ),
          );
        } catch (e) {
          showError(`Turning it on failed: ${(e as Error).message}`);
        }
      });
      replace(
        state,
        h("p", {}, "Scan this QR code with your authenticator app:"),
        qrImage(otpauth_uri),
        h("p", {}, "Or type the secret into the app, or open the link on the device that has the app:"),
        h("p", {}, "Secret: ", h("code", { id: "totp-secret", "data-secret": "true" }, secret)),
        h("p", {}, h("a", { href: otpauth_uri, id: "totp-uri" }, otpauth_uri)),
        form,
      );
      code.focus();
    } catch (e) {
      showError(`Starting failed: ${(e as Error).message}`);
    }
  }

  function disableForm(): HTMLElement {
    const password = h("input", { id: "totp-password", type: "password", autocomplete: "current-password", required: true });
    const form = h(
      "form",
      { class: "form-row", "aria-label": "Turn off two-step sign-in" },
      h("div", {}, h("label", { for: "totp-password" }, "Your password"), password),
      h("button", { type: "submit" }, "Turn off"),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearMessages();
      try {
        await api.disableTotp(password.value);
        await refresh();
      } catch (e) {
        showError(e instanceof ApiError && e.status === 401 ? "Wrong password." : `Turning it off failed: ${(e as Error).message}`);
      }
    });
    return h("div", {}, h("p", {}, "Two-step sign-in is on."), form);
  }

  refresh().catch((e: Error) => showError(e.message));
}

/**
 * The `otpauth://` URI as a QR code: an SVG from the `qr` library, shown as an image (nothing of
 * it is ever parsed as HTML), with the quiet zone of four modules the standard asks for.
 */
function qrImage(uri: string): HTMLImageElement {
  const svg = encodeQR(uri, "svg", { ecc: "medium", border: 4 });
  return h("img", {
    id: "totp-qr",
    class: "qr",
    src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`,
    alt: "QR code of the secret, for an authenticator app",
    width: 220,
    height: 220,
  });
}
