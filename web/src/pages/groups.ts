import { Group, GroupQuota, QuotaLimits, SessionRules, SetQuota, api } from "../api";
import { clearMessages, h, replace, runAction, showError, showNotice, newestOnly } from "../dom";
import { quotaForm } from "../quota";
import { rulesFields, rulesText } from "../rules";

/**
 * Admins: groups with their members and quotas; create and delete groups, add and remove members,
 * and set a group's quota and session rules ("Quota" and "Rules" open them below the table).
 */
export function groupsPage(root: HTMLElement): void {
  const body = h("tbody");
  const headers = ["Group", "Description", "Members", "Add a member", "Quota", "Rules", "Actions"];
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
  const quota = h("section", { id: "group-quota", "aria-live": "polite" });
  replace(
    root,
    h("h1", {}, "Groups"),
    form,
    h("table", {}, h("thead", {}, h("tr", {}, ...headers.map((c) => h("th", { scope: "col" }, c)))), body),
    quota,
  );

  const refresh = newestOnly(
    async () => {
      const groups = await api.groups();
      const [quotas, rules] = await Promise.all([
        Promise.all(groups.map((g) => api.groupQuota(g.name))),
        Promise.all(groups.map((g) => api.groupRules(g.name))),
      ]);
      return { groups, quotas, rules };
    },
    ({ groups, quotas, rules }) => {
      if (groups.length === 0) {
        replace(body, h("tr", {}, h("td", { colspan: headers.length }, "No groups yet.")));
        return;
      }
      replace(body, ...groups.map((g, i) => row(g, quotas[i], rules[i])));
    },
  );
  const act = (label: string, call: () => Promise<unknown>, done?: string) =>
    runAction(label, call, refresh, done);

  function row(g: Group, q: GroupQuota, r: SessionRules): HTMLTableRowElement {
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
      h("td", { "data-quota": g.name }, limitsText(q.limits)),
      h("td", { "data-rules": g.name }, rulesText(r)),
      h(
        "td",
        { class: "actions" },
        h(
          "button",
          { type: "button", "aria-label": `Quota of group ${g.name}`, onclick: () => showQuota(g.name, q.limits) },
          "Quota",
        ),
        h(
          "button",
          { type: "button", "aria-label": `Rules of group ${g.name}`, onclick: () => showRules(g.name, r) },
          "Rules",
        ),
        h(
          "button",
          {
            type: "button",
            "aria-label": `Delete group ${g.name}`,
            onclick: () => {
              if (window.confirm(`Delete the group ${g.name}?`)) {
                if (quota.dataset.group === g.name) quota.replaceChildren();
                void act("Deleting the group", () => api.deleteGroup(g.name), `Deleted ${g.name}.`);
              }
            },
          },
          "Delete",
        ),
      ),
    );
  }

  /** The section below the table for group `name`: a form for its session rules. */
  function showRules(name: string, rules: SessionRules): void {
    clearMessages();
    const fields = rulesFields("group-rules", rules);
    const save = h("button", { type: "submit" }, "Save rules");
    const rulesForm = h("form", { class: "template-form", "aria-label": `Rules of group ${name}` }, ...fields.fields, save);
    rulesForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearMessages();
      try {
        const saved = await api.setGroupRules(name, fields.read());
        await refresh();
        showRules(name, saved);
        showNotice(`Saved the rules of ${name}.`);
      } catch (e) {
        showError(`Setting the rules failed: ${(e as Error).message}`);
      }
    });
    quota.dataset.group = name;
    replace(
      quota,
      h("h2", {}, `Session rules of group ${name}`),
      h(
        "p",
        {},
        "These apply to the group's members on every session, at their next connection or transfer. " +
          "Where a template or another of their groups also sets a rule, the stricter wins; a rule not set here is left to them.",
      ),
      rulesForm,
    );
    quota.scrollIntoView({ block: "nearest" });
  }

  /** The quota section for group `name`: a form for its limits. */
  function showQuota(name: string, limits: QuotaLimits): void {
    clearMessages();
    const save = async (change: SetQuota) => {
      clearMessages();
      try {
        const saved = await api.setGroupQuota(name, change);
        await refresh();
        showQuota(name, saved.limits);
        showNotice(`Saved the quota of ${name}.`);
      } catch (e) {
        showError(`Setting the quota failed: ${(e as Error).message}`);
      }
    };
    quota.dataset.group = name;
    replace(
      quota,
      h("h2", {}, `Quota of group ${name}`),
      h(
        "p",
        {},
        "A member's limit is their own if set, else the most generous of their groups', else the server's default. " +
          "An empty field leaves that limit to the others.",
      ),
      quotaForm("group-quota", `group ${name}`, limits, save, "none"),
    );
    quota.scrollIntoView({ block: "nearest" });
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

/** "2 sessions · 4000 millicores · 8192 MiB", or "—" when the group sets none. */
function limitsText(limits: QuotaLimits): string {
  const parts: string[] = [];
  if (limits.max_sessions != null) parts.push(`${limits.max_sessions} session${limits.max_sessions === 1 ? "" : "s"}`);
  if (limits.max_cpu_millis != null) parts.push(`${limits.max_cpu_millis} millicores`);
  if (limits.max_memory_mib != null) parts.push(`${limits.max_memory_mib} MiB`);
  return parts.join(" · ") || "—";
}
