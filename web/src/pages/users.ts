import { Role, User, api } from "../api";
import { badge, h, replace, runAction, showError, time } from "../dom";
import { signedInUser } from "../session";

const ROLES: Role[] = ["user", "operator", "admin"];

/** Admins: every user, a form to create one, and disable/enable/delete per row. */
export function usersPage(root: HTMLElement): void {
  const body = h("tbody");
  const headers = ["User", "Role", "Status", "Groups", "Last sign-in", "Actions"];
  const username = h("input", { id: "new-username", type: "text", required: true, autocomplete: "off", spellcheck: "false" });
  const password = h("input", { id: "new-password", type: "password", required: true, autocomplete: "new-password", minlength: 8 });
  const role = h("select", { id: "new-role" }, ...ROLES.map((r) => h("option", { value: r }, r)));
  const create = h("button", { type: "submit" }, "Create user");
  const form = h(
    "form",
    { class: "form-row", "aria-label": "Create a user" },
    h("div", {}, h("label", { for: "new-username" }, "Username"), username),
    h("div", {}, h("label", { for: "new-password" }, "Password"), password),
    h("div", {}, h("label", { for: "new-role" }, "Role"), role),
    create,
  );
  replace(
    root,
    h("h1", {}, "Users"),
    form,
    h("table", {}, h("thead", {}, h("tr", {}, ...headers.map((c) => h("th", { scope: "col" }, c)))), body),
  );

  const refresh = async () => {
    const users = await api.users();
    replace(body, ...users.map(row));
  };
  const act = (label: string, call: () => Promise<unknown>, done?: string) =>
    runAction(label, call, refresh, done);

  function row(u: User): HTMLTableRowElement {
    const self = signedInUser()?.id === u.id;
    const button = (label: string, onclick: () => void) =>
      h("button", { type: "button", "aria-label": `${label} ${u.username}`, onclick: () => onclick() }, label);
    const actions: HTMLElement[] = [];
    if (u.disabled) {
      actions.push(button("Enable", () => void act("Enable", () => api.updateUser(u.username, { disabled: false }))));
    } else if (!self) {
      actions.push(button("Disable", () => void act("Disable", () => api.updateUser(u.username, { disabled: true }))));
    }
    if (!self) {
      actions.push(
        button("Delete", () => {
          if (!window.confirm(`Delete ${u.username}? Their sessions are stopped.`)) return;
          void act("Delete", () => api.deleteUser(u.username), `Deleted ${u.username}.`);
        }),
      );
    }
    return h(
      "tr",
      { "data-user": u.username },
      h("td", { title: u.id }, u.username, u.display_name && u.display_name !== u.username ? ` (${u.display_name})` : ""),
      h("td", {}, u.role),
      h("td", {}, badge(u.disabled ? "disabled" : "enabled")),
      h("td", {}, u.groups.join(", ") || "—"),
      h("td", {}, time(u.last_login_at)),
      h("td", { class: "actions" }, ...actions),
    );
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = username.value.trim();
    const request = { username: name, password: password.value, role: role.value as Role };
    create.disabled = true;
    void act("Creating the user", () => api.createUser(request), `Created ${name}.`).finally(() => {
      create.disabled = false;
    });
    form.reset();
  });

  refresh().catch((e: Error) => showError(e.message));
}
