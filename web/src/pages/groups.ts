import { Group, api } from "../api";
import { h, replace, runAction, showError } from "../dom";

/** Admins: groups with their members; create and delete groups, add and remove members. */
export function groupsPage(root: HTMLElement): void {
  const body = h("tbody");
  const headers = ["Group", "Description", "Members", "Add a member", "Actions"];
  const name = h("input", { id: "new-group", type: "text", required: true, autocomplete: "off", spellcheck: "false" });
  const description = h("input", { id: "new-group-description", type: "text", autocomplete: "off" });
  const create = h("button", { type: "submit" }, "Create group");
  const form = h(
    "form",
    { class: "form-row", "aria-label": "Create a group" },
    h("div", {}, h("label", { for: "new-group" }, "Name"), name),
    h("div", {}, h("label", { for: "new-group-description" }, "Description"), description),
    create,
  );
  replace(
    root,
    h("h1", {}, "Groups"),
    form,
    h("table", {}, h("thead", {}, h("tr", {}, ...headers.map((c) => h("th", { scope: "col" }, c)))), body),
  );

  const refresh = async () => {
    const groups = await api.groups();
    if (groups.length === 0) {
      replace(body, h("tr", {}, h("td", { colspan: headers.length }, "No groups yet.")));
      return;
    }
    replace(body, ...groups.map(row));
  };
  const act = (label: string, call: () => Promise<unknown>, done?: string) =>
    runAction(label, call, refresh, done);

  function row(g: Group): HTMLTableRowElement {
    const members = g.members.map((m) =>
      h(
        "span",
        { class: "member" },
        m,
        " ",
        h(
          "button",
          {
            type: "button",
            class: "link",
            "aria-label": `Remove ${m} from ${g.name}`,
            onclick: () => void act("Removing the member", () => api.removeMember(g.name, m)),
          },
          "×",
        ),
        " ",
      ),
    );
    const member = h("input", { type: "text", "aria-label": `Username to add to ${g.name}`, spellcheck: "false" });
    const add = h("form", { class: "row" }, member, h("button", { type: "submit" }, "Add"));
    add.addEventListener("submit", (event) => {
      event.preventDefault();
      const username = member.value.trim();
      if (username) void act("Adding the member", () => api.addMember(g.name, username));
    });
    return h(
      "tr",
      { "data-group": g.name },
      h("td", {}, g.name),
      h("td", {}, g.description || "—"),
      h("td", {}, ...(members.length ? members : ["—"])),
      h("td", {}, add),
      h(
        "td",
        { class: "actions" },
        h(
          "button",
          {
            type: "button",
            "aria-label": `Delete group ${g.name}`,
            onclick: () => {
              if (window.confirm(`Delete the group ${g.name}?`)) {
                void act("Deleting the group", () => api.deleteGroup(g.name), `Deleted ${g.name}.`);
              }
            },
          },
          "Delete",
        ),
      ),
    );
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const group = name.value.trim();
    const text = description.value.trim();
    void act("Creating the group", () => api.createGroup(group, text), `Created ${group}.`);
    form.reset();
  });

  refresh().catch((e: Error) => showError(e.message));
}
