import { ApiError, Role, SetQuota, User, api } from "../api";
import { badge, clearMessages, h, replace, runAction, showError, showNotice, time, newestOnly } from "../dom";
import { quotaForm, quotaTable } from "../quota";
import { signedInUser } from "../session";

const ROLES: Role[] = ["user", "operator", "admin"];

/**
 * Admins: every user, a form to create one, and disable/enable/delete per row; "Quota" opens the
 * user's quota below the table (what applies, what is used, and the limits set on the user).
 */
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
  const quota = h("section", { id: "user-quota", "aria-live": "polite" });
  const homeQuestion = homeDialog();
  replace(
    root,
    h("h1", {}, "Users"),
    form,
    h("table", {}, h("thead", {}, h("tr", {}, ...headers.map((c) => h("th", { scope: "col" }, c)))), body),
    quota,
    homeQuestion.dialog,
  );

  const refresh = newestOnly(api.users, (users) => replace(body, ...users.map(row)));
  const act = (label: string, call: () => Promise<unknown>, done?: string) =>
    runAction(label, call, refresh, done);

  /**
   * Deletes the user; if they have a home, asks whether it goes too. Returns what was done, or
   * null when the admin cancelled at that question (the user is then not deleted).
   */
  async function deleteUser(username: string): Promise<string | null> {
    try {
      await api.deleteUser(username);
      return `Deleted ${username}.`;
    } catch (e) {
      if (!(e instanceof ApiError) || e.code !== "home_choice_required") throw e;
    }
    const choice = await homeQuestion.ask(username);
    if (choice === null) return null;
    await api.deleteUser(username, choice);
    return choice === "keep"
      ? `Deleted ${username}; their home stays on its agent.`
      : `Deleted ${username}; their agent removes their home.`;
  }

  const remove = async (username: string) => {
    if (!window.confirm(`Delete ${username}? Their sessions are stopped.`)) return;
    clearMessages();
    try {
      const done = await deleteUser(username);
      if (done === null) {
        showNotice(`${username} was not deleted.`);
        return;
      }
      if (quota.dataset.user === username) quota.replaceChildren();
      await refresh();
      showNotice(done);
    } catch (e) {
      showError(`Delete failed: ${(e as Error).message}`);
    }
  };

  function row(u: User): HTMLTableRowElement {
    const self = signedInUser()?.id === u.id;
    const button = (label: string, onclick: () => void) =>
      h("button", { type: "button", "aria-label": `${label} ${u.username}`, onclick: () => onclick() }, label);
    const actions: HTMLElement[] = [button("Quota", () => void showQuota(u.username))];
    if (u.disabled) {
      actions.push(button("Enable", () => void act("Enable", () => api.updateUser(u.username, { disabled: false }))));
    } else if (!self) {
      actions.push(button("Disable", () => void act("Disable", () => api.updateUser(u.username, { disabled: true }))));
    }
    if (!self) {
      actions.push(button("Delete", () => void remove(u.username)));
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

  /** The quota section for `username`: use against what applies, and a form for their own limits. */
  async function showQuota(username: string): Promise<void> {
    clearMessages();
    try {
      const q = await api.userQuota(username);
      const save = async (change: SetQuota) => {
        clearMessages();
        try {
          await api.setUserQuota(username, change);
          await showQuota(username);
          showNotice(`Saved the quota of ${username}.`);
        } catch (e) {
          showError(`Setting the quota failed: ${(e as Error).message}`);
        }
      };
      quota.dataset.user = username;
      replace(
        quota,
        h("h2", {}, `Quota of ${username}`),
        h("p", {}, "In use against what applies: the user's own limit if set, else their groups' most generous, else the server's default."),
        quotaTable(q.effective, q.usage, "user-quota-use"),
        h("p", {}, "Limits set on the user itself; an empty field inherits from the groups and the default."),
        quotaForm("user-quota", username, q.limits, save),
      );
      quota.scrollIntoView({ block: "nearest" });
    } catch (e) {
      showError(`Reading the quota failed: ${(e as Error).message}`);
    }
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

/**
 * The question a user's deletion asks when they have a home (`persistent_home: user`): keep it,
 * delete it, or cancel the deletion. Three answers, so not `window.confirm`, whose Cancel would
 * have to mean one of them.
 */
function homeDialog(): { dialog: HTMLDialogElement; ask: (username: string) => Promise<"keep" | "delete" | null> } {
  const title = h("h2", { id: "home-title" });
  const text = h("p", { id: "home-text" });
  const answer = (value: string, label: string) => h("button", { type: "submit", value }, label);
  const dialog = h(
    "dialog",
    { class: "ask-dialog", id: "home-dialog", "aria-labelledby": "home-title", "aria-describedby": "home-text" },
    h(
      "form",
      { method: "dialog" },
      title,
      text,
      h(
        "div",
        { class: "row" },
        answer("keep", "Keep the home"),
        answer("delete", "Delete the home"),
        answer("cancel", "Cancel"),
      ),
    ),
  );

  const ask = (username: string) => {
    title.textContent = `${username} has a home directory`;
    text.textContent =
      `Sessions of templates that keep the user's home saved ${username}'s files there. ` +
      "Keep it on its agent for an operator to back up or remove, or delete it with the user " +
      "(its agent removes it, once online). Cancel deletes nothing.";
    dialog.returnValue = "";
    dialog.showModal();
    return new Promise<"keep" | "delete" | null>((resolve) => {
      // Escape closes the dialog with no answer: the same as Cancel.
      dialog.addEventListener(
        "close",
        () => {
          const value = dialog.returnValue;
          resolve(value === "keep" || value === "delete" ? value : null);
        },
        { once: true },
      );
    });
  };
  return { dialog, ask };
}
