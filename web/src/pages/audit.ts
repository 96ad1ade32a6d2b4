import { AuditFilter, AuditRecord, api } from "../api";
import { clearMessages, h, replace, showError, time } from "../dom";
import { may } from "../session";

/** Entries per page. */
const PAGE_SIZE = 50;

/** Actions the server writes, offered as suggestions in the action filter. */
const KNOWN_ACTIONS = [
  "auth.login",
  "auth.login_failed",
  "auth.logout",
  "auth.password_change",
  "auth.totp_enable",
  "auth.totp_disable",
  "auth.recovery_code_use",
  "session.create",
  "template.create",
  "template.delete",
  "user.create",
  "user.update",
  "user.delete",
  "user.quota",
  "user.totp_reset",
  "group.create",
  "group.update",
  "group.delete",
  "group.member_add",
  "group.member_remove",
  "group.quota",
  "token.create",
  "token.revoke",
  "agent.delete",
  "agent_key.create",
  "agent_key.revoke",
];

/**
 * The audit log, newest first, a page at a time: admins read everyone's entries and may filter by
 * actor; anyone else reads only their own (the API decides which).
 */
export function auditPage(root: HTMLElement): void {
  const admin = may("admin");
  const body = h("tbody");
  const headers = ["Time", "Actor", "Action", "Target", "Client address"];
  const field = (id: string, label: string, type = "text", attrs: Record<string, string> = {}) => {
    const input = h("input", { id, type, autocomplete: "off", spellcheck: "false", ...attrs });
    return { input, box: h("div", {}, h("label", { for: id }, label), input) };
  };
  const actor = field("audit-actor", "Actor (username)");
  const action = field("audit-action", "Action", "text", { list: "audit-actions" });
  const target = field("audit-target", "Target");
  const since = field("audit-since", "Since", "datetime-local");
  const until = field("audit-until", "Until", "datetime-local");
  const reset = h("button", { type: "button" }, "Reset");
  const form = h(
    "form",
    { class: "form-row", "aria-label": "Filter the audit log" },
    admin ? actor.box : null,
    action.box,
    target.box,
    since.box,
    until.box,
    h("button", { type: "submit" }, "Filter"),
    reset,
    h("datalist", { id: "audit-actions" }, ...KNOWN_ACTIONS.map((a) => h("option", { value: a }))),
  );
  const newer = h("button", { type: "button", id: "audit-newer" }, "Newer");
  const older = h("button", { type: "button", id: "audit-older" }, "Older");
  const position = h("span", { class: "muted", role: "status" });
  replace(
    root,
    h("h1", {}, "Audit log"),
    admin ? null : h("p", {}, "Your own entries: what you did and when."),
    form,
    h("table", { id: "audit" }, h("thead", {}, h("tr", {}, ...headers.map((c) => h("th", { scope: "col" }, c)))), body),
    h("div", { class: "row pager" }, newer, older, position),
  );

  let filter: AuditFilter = {};
  // The cursor of every page shown so far: `cursors[i]` opened page i (the first has none).
  let cursors: (string | undefined)[] = [undefined];
  let next: string | undefined;

  async function show(pageIndex: number): Promise<void> {
    clearMessages();
    try {
      const page = await api.audit({ ...filter, cursor: cursors[pageIndex], limit: PAGE_SIZE });
      cursors = cursors.slice(0, pageIndex + 1);
      next = page.next_cursor ?? undefined;
      if (page.items.length === 0) {
        replace(body, h("tr", {}, h("td", { colspan: headers.length }, "No entries.")));
      } else {
        replace(body, ...page.items.map(row));
      }
      newer.disabled = pageIndex === 0;
      older.disabled = next === undefined;
      replace(position, page.items.length ? `Page ${pageIndex + 1}` : "");
      position.dataset.page = String(pageIndex + 1);
    } catch (e) {
      showError(`Reading the audit log failed: ${(e as Error).message}`);
    }
  }

  function row(r: AuditRecord): HTMLTableRowElement {
    return h(
      "tr",
      { "data-audit": r.id, "data-action": r.action, title: detailText(r.detail) },
      h("td", {}, time(r.at)),
      h("td", {}, r.actor),
      h("td", {}, h("code", {}, r.action)),
      h("td", {}, r.target || "—"),
      h("td", {}, r.client_addr ?? "—"),
    );
  }

  newer.addEventListener("click", () => void show(cursors.length - 2));
  older.addEventListener("click", () => {
    if (next === undefined) return;
    cursors.push(next);
    void show(cursors.length - 1);
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = (input: HTMLInputElement) => input.value.trim() || undefined;
    // datetime-local is in the browser's time zone; the API takes RFC 3339.
    const instant = (input: HTMLInputElement) => (input.value ? new Date(input.value).toISOString() : undefined);
    filter = {
      actor: admin ? text(actor.input) : undefined,
      action: text(action.input),
      target: text(target.input),
      since: instant(since.input),
      until: instant(until.input),
    };
    cursors = [undefined];
    void show(0);
  });
  reset.addEventListener("click", () => {
    form.reset();
    filter = {};
    cursors = [undefined];
    void show(0);
  });

  void show(0);
}

/** The entry's detail for a tooltip, or nothing when it has none. */
function detailText(detail: unknown): string | null {
  if (detail === null || detail === undefined) return null;
  if (typeof detail === "object" && Object.keys(detail).length === 0) return null;
  return JSON.stringify(detail);
}
