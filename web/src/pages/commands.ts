import { api } from "../api";
import { badge, h, poll, replace, shortId, showError, time } from "../dom";

export function commandsPage(root: HTMLElement): () => void {
  const body = h("tbody");
  const headers = ["Command", "Action", "Session", "Agent", "Status", "Attempts", "Created", "Completed", "Error"];
  replace(
    root,
    h("h1", {}, "Recent commands"),
    h("table", {}, h("thead", {}, h("tr", {}, ...headers.map((c) => h("th", { scope: "col" }, c)))), body),
  );
  return poll(async () => {
    try {
      const commands = await api.commands(50);
      if (commands.length === 0) {
        replace(body, h("tr", {}, h("td", { colspan: headers.length }, "No commands yet.")));
        return;
      }
      replace(
        body,
        ...commands.map((c) =>
          h(
            "tr",
            { "data-command": c.command_id },
            h("td", { title: c.command_id }, h("code", {}, shortId(c.command_id))),
            h("td", {}, c.action),
            h("td", { title: c.session_id ?? "" }, h("code", {}, shortId(c.session_id))),
            h("td", {}, c.agent_id),
            h("td", {}, badge(c.status)),
            h("td", {}, c.attempts),
            h("td", {}, time(c.created_at)),
            h("td", {}, time(c.completed_at)),
            h("td", {}, c.error_message ?? ""),
          ),
        ),
      );
    } catch (e) {
      showError((e as Error).message);
    }
  }, 2000);
}
