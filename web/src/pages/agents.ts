import { api } from "../api";
import { badge, h, poll, replace, showError, time } from "../dom";

export function agentsPage(root: HTMLElement): () => void {
  const body = h("tbody");
  const headers = ["Agent", "Status", "Runtime", "Replica", "Sessions", "Version", "Last heartbeat"];
  replace(
    root,
    h("h1", {}, "Agents"),
    h("table", {}, h("thead", {}, h("tr", {}, ...headers.map((c) => h("th", { scope: "col" }, c)))), body),
  );
  return poll(async () => {
    try {
      const agents = await api.agents();
      if (agents.length === 0) {
        replace(body, h("tr", {}, h("td", { colspan: headers.length }, "No agents have registered.")));
        return;
      }
      replace(
        body,
        ...agents.map((a) =>
          h(
            "tr",
            { "data-agent": a.agent_id },
            h("td", {}, a.agent_id),
            h("td", {}, badge(a.status)),
            h("td", {}, a.platform),
            h("td", {}, a.replica_id ?? "—"),
            h("td", {}, `${a.active_sessions} / ${a.max_sessions}`),
            h("td", {}, a.version ?? "—"),
            h("td", {}, time(a.last_heartbeat_at)),
          ),
        ),
      );
    } catch (e) {
      showError((e as Error).message);
    }
  }, 2000);
}
