import { ApiToken, api } from "../api";
import { clearMessages, h, replace, showError, time, newestOnly } from "../dom";

/** The signed-in user's personal API tokens: list, create (the secret is shown once), revoke. */
export function tokensPage(root: HTMLElement): void {
  const body = h("tbody");
  const headers = ["Name", "Starts with", "Created", "Last used", "Expires", "Actions"];
  const name = h("input", { id: "token-name", type: "text", required: true, autocomplete: "off" });
  const form = h(
    "form",
    { class: "form-row", "aria-label": "Create a token" },
    h("div", {}, h("label", { for: "token-name" }, "Name"), name),
    h("button", { type: "submit" }, "Create token"),
  );
  const created = h("div", { id: "created-token", "aria-live": "polite" });
  replace(
    root,
    h("h1", {}, "API tokens"),
    h("p", {}, "A token acts as you in the CLI and in scripts: ", h("code", {}, "streamspace --token …"), "."),
    form,
    created,
    h("table", {}, h("thead", {}, h("tr", {}, ...headers.map((c) => h("th", { scope: "col" }, c)))), body),
  );

  const refresh = newestOnly(api.tokens, (tokens) => {
    if (tokens.length === 0) {
      replace(body, h("tr", {}, h("td", { colspan: headers.length }, "No tokens.")));
      return;
    }
    replace(body, ...tokens.map(row));
  });

  function row(t: ApiToken): HTMLTableRowElement {
    // The admin token (`ssa_…`) is the one `streamspace up` and STREAMSPACE_ADMIN_TOKEN configure.
    const admin = t.prefix.startsWith("ssa_");
    const warning = admin
      ? `Revoke the admin token ${t.name}? The CLI and automation that use it stop working, and ` +
        "`streamspace up` (or a server given it in STREAMSPACE_ADMIN_TOKEN) refuses to start with it."
      : `Revoke the token ${t.name}? Whatever uses it stops working.`;
    const revoke = h("button", { type: "button", "aria-label": `Revoke ${t.name}` }, "Revoke");
    revoke.addEventListener("click", async () => {
      if (!window.confirm(warning)) return;
      clearMessages();
      try {
        await api.revokeToken(t.id);
        await refresh();
      } catch (e) {
        showError(`Revoking failed: ${(e as Error).message}`);
      }
    });
    return h(
      "tr",
      { "data-token": t.id },
      h("td", {}, t.name, admin ? " (admin token)" : ""),
      h("td", {}, h("code", {}, `${t.prefix}…`)),
      h("td", {}, time(t.created_at)),
      h("td", {}, time(t.last_used_at)),
      h("td", {}, t.expires_at ? time(t.expires_at) : "never"),
      h("td", { class: "actions" }, revoke),
    );
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearMessages();
    try {
      const token = await api.createToken(name.value.trim());
      form.reset();
      replace(
        created,
        h(
          "div",
          { class: "card", role: "status" },
          h("p", {}, `Your new token ${token.name} — copy it now, it is not shown again:`),
          h("code", { class: "secret", "data-secret": "true" }, token.token),
        ),
      );
      await refresh();
    } catch (e) {
      showError(`Creating the token failed: ${(e as Error).message}`);
    }
  });

  refresh().catch((e: Error) => showError(e.message));
}
