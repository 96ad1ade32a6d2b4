import { api } from "../api";
import { h, replace, showError } from "../dom";
import { quotaTable } from "../quota";

/** The signed-in user's profile: who they are, their groups, and their quota and its use. */
export function accountPage(root: HTMLElement): void {
  const details = h("div", { id: "profile", "aria-busy": "true" });
  replace(root, h("h1", {}, "Profile"), details);

  api
    .me(false)
    .then(({ user, quota, usage }) => {
      details.removeAttribute("aria-busy");
      const row = (label: string, value: string) => h("div", {}, h("dt", {}, label), h("dd", {}, value));
      replace(
        details,
        h(
          "dl",
          { class: "facts" },
          row("Username", user.username),
          row("Name", user.display_name || "—"),
          row("Email", user.email ?? "—"),
          row("Role", user.role),
          row("Groups", user.groups.join(", ") || "—"),
          row("Two-step sign-in", user.totp_enabled ? "on" : "off"),
        ),
        h("h2", {}, "Your quota"),
        h(
          "p",
          {},
          "What your sessions may hold at once. Hibernated sessions count too; stop the ones you no longer need.",
        ),
        quotaTable(quota, usage),
        h(
          "p",
          {},
          h("a", { href: "/audit", "data-link": true }, "Your activity"),
          ": sign-ins and changes you made, from the audit log.",
        ),
      );
    })
    .catch((e: Error) => showError(e.message));
}
