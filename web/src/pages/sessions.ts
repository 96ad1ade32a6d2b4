import { Session, api, isTerminal } from "../api";
import { badge, clearMessages, h, poll, replace, shortId, showError, time } from "../dom";
import { navigate } from "../router";
import { may, signedInUser } from "../session";
import { shareDialog } from "./share";

const POLL_MS = 1500;

export function sessionsPage(root: HTMLElement): () => void {
  const body = h("tbody");
  const showEnded = h("input", { type: "checkbox", id: "show-ended" });
  // Operators and admins may also see everyone's sessions; the API shows users only their own.
  const showAll = h("input", { type: "checkbox", id: "show-all" });
  const columns = ["Session", "Template", "Owner", "Agent", "State", "Updated", "Actions"];
  const table = h(
    "table",
    { "aria-describedby": "sessions-title" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ...columns.map((c) => h("th", { scope: "col" }, c)),
      ),
    ),
    body,
  );
  replace(
    root,
    h(
      "div",
      { class: "row spread" },
      h("h1", { id: "sessions-title" }, "My sessions"),
      h(
        "div",
        {},
        may("operator") ? h("label", { class: "inline" }, showAll, " Show everyone's sessions") : null,
        h("label", { class: "inline" }, showEnded, " Show ended sessions"),
      ),
    ),
    table,
  );

  // The share dialog of one session at a time, opened from its row.
  let sharing: ReturnType<typeof shareDialog> | null = null;
  const share = (id: string) => {
    sharing?.close();
    sharing?.dialog.remove();
    sharing = shareDialog(id);
    root.append(sharing.dialog);
    sharing.button.click();
  };

  let latest: Session[] = [];
  const load = () => api.sessions(showAll.checked ? undefined : signedInUser()?.username);
  const render = () => {
    const rows = latest.filter((s) => showEnded.checked || !isTerminal(s.state));
    if (rows.length === 0) {
      replace(body, h("tr", {}, h("td", { colspan: columns.length }, "No sessions. Launch one from the catalog.")));
      return;
    }
    replace(body, ...rows.map(row));
  };
  showEnded.addEventListener("change", render);
  showAll.addEventListener("change", () => void act("Listing sessions", async () => {}));

  const act = async (label: string, call: () => Promise<unknown>) => {
    clearMessages();
    try {
      await call();
      latest = await load();
      render();
    } catch (e) {
      showError(`${label} failed: ${(e as Error).message}`);
    }
  };

  function row(s: Session): HTMLTableRowElement {
    const button = (label: string, onclick: () => void) =>
      h(
        "button",
        {
          type: "button",
          "data-action": label.toLowerCase(),
          "aria-label": `${label} session ${shortId(s.id)}`,
          onclick: () => onclick(),
        },
        label,
      );
    const actions: HTMLElement[] = [];
    if (s.state === "running") {
      actions.push(button("Connect", () => navigate(`/view/${s.id}`)));
      actions.push(button("Hibernate", () => void act("Hibernate", () => api.hibernate(s.id))));
    }
    if (s.state === "hibernated") actions.push(button("Wake", () => void act("Wake", () => api.wake(s.id))));
    if (!isTerminal(s.state)) {
      actions.push(button("Share", () => share(s.id)));
      actions.push(button("Stop", () => void act("Stop", () => api.stop(s.id))));
    }
    // The API answers who may read them (the owner and admins).
    actions.push(button("Recordings", () => navigate(`/sessions/${s.id}/recordings`)));
    return h(
      "tr",
      { "data-session": s.id, "data-state": s.state },
      h("td", { title: s.id }, h("code", {}, shortId(s.id))),
      h("td", {}, s.template),
      h("td", {}, s.owner),
      h("td", {}, s.agent_id ?? "—"),
      h("td", { title: s.error_message ?? "" }, badge(s.state)),
      h("td", {}, time(s.updated_at)),
      h("td", { class: "actions" }, ...actions),
    );
  }

  const stopPolling = poll(async () => {
    try {
      latest = await load();
      render();
    } catch (e) {
      showError((e as Error).message);
    }
  }, POLL_MS);
  return () => {
    stopPolling();
    sharing?.close();
  };
}
