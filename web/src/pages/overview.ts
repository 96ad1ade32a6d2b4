import { api, type Overview } from "../api";
import { badge, h, poll, replace, showError } from "../dom";
import { barChart } from "../chart";

const WINDOWS: [number, string][] = [
  [1, "1 hour"],
  [6, "6 hours"],
  [24, "24 hours"],
  [168, "7 days"],
];

/** "14:05", or "Mon 14:05" for windows longer than a day, in the user's time zone. */
function label(iso: string, hours: number): string {
  const d = new Date(iso);
  const hm = `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
  return hours > 24 ? `${d.toLocaleDateString(undefined, { weekday: "short" })} ${hm}` : hm;
}

function count(map: Record<string, number>, ...keys: string[]): number {
  return keys.reduce((sum, k) => sum + (map[k] ?? 0), 0);
}

/** The operators' overview: this moment, each agent's load, and charts of the last hours. */
export function overviewPage(root: HTMLElement): () => void {
  let hours = 6;
  const now = h("div", { class: "tiles" });
  const charts = h("div", { class: "charts" });
  const agents = h("tbody");
  const picker = h(
    "select",
    { id: "overview-hours", "aria-label": "Window" },
    ...WINDOWS.map(([value, text]) => h("option", { value, selected: value === hours }, text)),
  );
  replace(
    root,
    h("h1", {}, "Overview"),
    h("p", { class: "window" }, h("label", { for: "overview-hours" }, "Show the last "), picker),
    now,
    charts,
    h("h2", {}, "Agents"),
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, ...["Agent", "Status", "Runtime", "Replica", "Load"].map((c) => h("th", { scope: "col" }, c)))),
      agents,
    ),
  );
  const tile = (name: string, value: number) =>
    h("div", { class: "tile", "data-tile": name }, h("strong", {}, value), h("span", {}, name));
  const render = (o: Overview) => {
    replace(
      now,
      tile("running", count(o.sessions_now, "running")),
      tile("hibernated", count(o.sessions_now, "hibernated")),
      tile("starting", count(o.sessions_now, "pending", "starting")),
      tile("failed", count(o.sessions_now, "failed")),
      tile("commands in flight", count(o.commands_in_flight, "pending", "sent", "acknowledged")),
    );
    // The axis is the whole window up to the end of the current interval, so that a few
    // samples show as what they are: the last minutes of it.
    const interval = o.interval_secs * 1000;
    const end = Math.ceil(Date.now() / interval) * interval;
    const axis = {
      start: end - o.hours * 3_600_000,
      end,
      interval,
      at: o.points.map((p) => Date.parse(p.at)),
      label: (t: number) => label(new Date(t).toISOString(), o.hours),
    };
    const minutes = o.interval_secs / 60;
    const per = minutes === 1 ? "minute" : `${minutes} minutes`;
    replace(
      charts,
      barChart({
        ...axis,
        title: `Sessions by state (at the end of each ${minutes}-minute interval)`,
        series: [
          { name: "running", colour: "var(--accent)", values: o.points.map((p) => p.sessions_running) },
          { name: "hibernated", colour: "var(--muted)", values: o.points.map((p) => p.sessions_hibernated) },
          {
            name: "starting",
            colour: "#d9a400",
            values: o.points.map((p) => p.sessions_pending + p.sessions_starting),
          },
        ],
      }),
      barChart({
        ...axis,
        title: `Commands per ${per}, and failures`,
        series: [
          {
            name: "succeeded or pending",
            colour: "var(--accent)",
            values: o.points.map((p) => Math.max(0, p.commands_created - p.commands_failed)),
          },
          { name: "failed", colour: "var(--danger)", values: o.points.map((p) => p.commands_failed) },
        ],
      }),
      barChart({
        ...axis,
        title: "Sessions that failed, and agents online",
        series: [
          { name: "sessions failed", colour: "var(--danger)", values: o.points.map((p) => p.sessions_failed) },
          { name: "agents online", colour: "#3a9a5b", values: o.points.map((p) => p.agents_online) },
        ],
      }),
    );
  };
  const tick = async () => {
    try {
      const [overview, list] = await Promise.all([api.overview(hours), api.agents()]);
      render(overview);
      if (list.length === 0) {
        replace(agents, h("tr", {}, h("td", { colspan: 5 }, "No agents have registered.")));
        return;
      }
      replace(
        agents,
        ...list.map((a) => {
          const load = a.max_sessions > 0 ? a.active_sessions / a.max_sessions : 1;
          return h(
            "tr",
            { "data-agent": a.agent_id },
            h("td", {}, a.agent_id),
            h("td", {}, badge(a.status)),
            h("td", {}, a.platform),
            h("td", {}, a.replica_id ?? "—"),
            h(
              "td",
              {},
              h("meter", { min: 0, max: 1, value: load, high: 0.8, "aria-label": `load of ${a.agent_id}` }),
              ` ${a.active_sessions} / ${a.max_sessions}`,
            ),
          );
        }),
      );
    } catch (e) {
      showError((e as Error).message);
    }
  };
  // Refreshed every 15 s (the samples are a minute apart; the counts of now move faster); a new
  // window starts polling afresh, so the change shows at once.
  let stop = poll(tick, 15000);
  picker.addEventListener("change", () => {
    hours = Number(picker.value);
    stop();
    stop = poll(tick, 15000);
  });
  return () => stop();
}
