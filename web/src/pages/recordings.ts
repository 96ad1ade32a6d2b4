// The recordings of one session's viewings: play, download, delete (its owner and admins).

import { Recording, api } from "../api";
import { clearMessages, h, replace, shortId, showError, time } from "../dom";
import { navigate } from "../router";

export function recordingsPage(root: HTMLElement, sessionId: string): () => void {
  const body = h("tbody");
  const columns = ["Recording", "Viewer", "Started", "Ended", "Size", "Complete", "Actions"];
  replace(
    root,
    h(
      "div",
      { class: "row spread" },
      h("h1", { id: "recordings-title" }, "Recordings of session ", h("code", {}, shortId(sessionId))),
      h("a", { href: "/sessions", "data-link": "" }, "My sessions"),
    ),
    h(
      "table",
      { "aria-describedby": "recordings-title" },
      h("thead", {}, h("tr", {}, ...columns.map((c) => h("th", { scope: "col" }, c)))),
      body,
    ),
  );

  const load = async () => {
    clearMessages();
    try {
      const list = await api.recordings(sessionId);
      if (list.length === 0) {
        replace(body, h("tr", {}, h("td", { colspan: columns.length }, "No recordings of this session.")));
      } else {
        replace(body, ...list.map(row));
      }
    } catch (e) {
      showError(`Listing recordings failed: ${(e as Error).message}`);
    }
  };

  function row(r: Recording): HTMLTableRowElement {
    const ended = r.ended_at !== null && r.ended_at !== undefined;
    const actions = [
      h(
        "button",
        { type: "button", "data-action": "play", disabled: !ended, onclick: () => navigate(`/recordings/${r.id}`) },
        "Play",
      ),
      ended ? h("a", { href: `/api/v1/recordings/${r.id}/data`, download: `${r.id}.ssrec` }, "Download") : null,
      h(
        "button",
        {
          type: "button",
          "data-action": "delete",
          onclick: async () => {
            if (!confirm("Delete this recording?")) return;
            try {
              await api.deleteRecording(r.id);
            } catch (e) {
              showError(`Deleting failed: ${(e as Error).message}`);
            }
            await load();
          },
        },
        "Delete",
      ),
    ];
    return h(
      "tr",
      { "data-recording": r.id },
      h("td", { title: r.id }, h("code", {}, shortId(r.id))),
      h("td", {}, r.viewer),
      h("td", {}, time(r.started_at)),
      h("td", {}, ended ? time(r.ended_at) : "recording…"),
      h("td", {}, `${Math.ceil(r.bytes / 1024)} KiB`),
      h("td", {}, r.complete ? "yes" : "no"),
      h("td", { class: "actions" }, ...actions),
    );
  }

  void load();
  return () => {};
}
