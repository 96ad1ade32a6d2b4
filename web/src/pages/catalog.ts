import { ApiError, Me, Session, Template, api, isTerminal } from "../api";
import { clearMessages, h, replace, showError } from "../dom";
import { quotaSummary, wouldExceed } from "../quota";
import { navigate } from "../router";

const LAUNCH_TIMEOUT_MS = 120_000;

export function catalogPage(root: HTMLElement): () => void {
  let cancelled = false;
  const list = h("div", { class: "catalog-groups", "aria-busy": "true" });
  const quota = h("p", { id: "quota-summary", class: "muted" });
  const search = h("input", {
    type: "search",
    id: "catalog-search",
    placeholder: "Search by name, description or tag",
    "aria-label": "Search the catalog",
  });
  search.addEventListener("input", () => render());
  replace(root, h("h1", {}, "Catalog"), quota, search, list);
  let templates: Template[] = [];
  let me: Me | null = null;

  async function launch(name: string, button: HTMLButtonElement, status: HTMLElement) {
    clearMessages();
    button.disabled = true;
    status.textContent = "Creating…";
    try {
      let session: Session = await api.createSession(name);
      const deadline = Date.now() + LAUNCH_TIMEOUT_MS;
      // Open the viewer only once the session's VNC server answers (state `running`).
      while (session.state !== "running") {
        if (cancelled) return;
        if (isTerminal(session.state)) {
          throw new Error(`The session ${session.state}${session.error_message ? `: ${session.error_message}` : ""}.`);
        }
        if (Date.now() > deadline) throw new Error("The session did not start in time; see My sessions.");
        status.textContent = `Session is ${session.state}…`;
        await new Promise((resolve) => setTimeout(resolve, 1000));
        session = await api.session(session.id);
      }
      if (!cancelled) navigate(`/view/${session.id}`);
    } catch (e) {
      showError(launchError(e as Error));
      status.textContent = "";
      // What the quota allows may have changed (or been the reason): show it as it is now.
      await loadQuota().catch(() => {});
      render();
    } finally {
      button.disabled = false;
    }
  }

  /** Your quota's use on top, and on each card whether launching it would exceed it. */
  function render(): void {
    if (me) replace(quota, "Your quota: ", quotaSummary(me.quota, me.usage), ".");
    if (templates.length === 0) {
      replace(list, h("p", {}, "No templates yet."));
      return;
    }
    const shown = templates.filter((t) => matches(t, search.value));
    if (shown.length === 0) {
      replace(list, h("p", { class: "muted" }, "No template matches your search."));
      return;
    }
    // One heading per category, alphabetically, with the uncategorised under "Other" last.
    const groups = new Map<string, Template[]>();
    for (const t of shown) {
      const key = t.category ?? OTHER;
      groups.set(key, [...(groups.get(key) ?? []), t]);
    }
    const names = [...groups.keys()].sort((a, b) => (a === OTHER ? 1 : b === OTHER ? -1 : a.localeCompare(b)));
    replace(
      list,
      ...names.map((name) =>
        h(
          "section",
          { class: "catalog-group", "data-category": name },
          h("h2", {}, name),
          h("ul", { class: "catalog" }, ...(groups.get(name) ?? []).map(card)),
        ),
      ),
    );
  }

  function card(t: Template): HTMLLIElement {
    const status = h("span", { class: "launch-status", role: "status" });
    // The button stays usable: the server decides, and says why it refuses.
    const over = me ? wouldExceed(me, t) : null;
    const warningId = `quota-warning-${t.name}`;
    const button = h(
      "button",
      { type: "button", "data-template": t.name, "aria-describedby": over ? warningId : null },
      "Launch",
    );
    button.addEventListener("click", () => void launch(t.name, button, status));
    return h(
      "li",
      { class: "card", "data-card": t.name },
      h(
        "h3",
        {},
        h("span", { class: "template-icon", "aria-hidden": "true", "data-icon": t.icon ?? "generic" }, iconOf(t)),
        " ",
        t.name,
      ),
      h("p", {}, t.description || t.command.join(" ")),
      t.tags.length ? h("p", { class: "tags" }, ...t.tags.map((tag) => h("span", { class: "tag" }, tag))) : null,
      over ? h("p", { id: warningId, class: "quota-warning", "data-quota-warning": t.name }, over) : null,
      h("div", { class: "row" }, button, status),
    );
  }

  async function loadQuota(): Promise<void> {
    me = await api.me(false);
  }

  Promise.all([api.templates(), loadQuota()])
    .then(([loaded]) => {
      templates = loaded;
      list.removeAttribute("aria-busy");
      if (!cancelled) render();
    })
    .catch((e: Error) => showError(e.message));
  return () => {
    cancelled = true;
  };
}

/** The message for a failed launch; a refusal for the quota says what to do about it. */
function launchError(e: Error): string {
  if (e instanceof ApiError && e.code === "quota_exceeded") {
    return (
      `Launch refused: your quota does not allow another session (${e.message}). ` +
      "Stop a session you no longer need (hibernated ones count too), or ask an admin for a larger quota."
    );
  }
  return e instanceof ApiError ? `Launch failed: ${e.message}` : e.message;
}

/** The heading of templates without a category. */
const OTHER = "Other";

const ICONS: Record<string, string> = {
  terminal: "\u{1F5B3}",
  desktop: "\u{1F5A5}",
  browser: "\u{1F310}",
  office: "\u{1F4C4}",
  code: "\u{1F4BB}",
  graphics: "\u{1F3A8}",
  media: "\u{1F3AC}",
  game: "\u{1F3AE}",
  science: "\u{1F52C}",
  tools: "\u{1F527}",
};

/** The template's picture (a generic window when it names none). */
function iconOf(t: Template): string {
  return (t.icon && ICONS[t.icon]) || "\u{1F5D4}";
}

/** Whether every word of `query` is in the template's name, description, category or tags. */
export function matches(t: Template, query: string): boolean {
  const haystack = [t.name, t.description, t.category ?? "", ...t.tags].join(" ").toLowerCase();
  return query
    .toLowerCase()
    .split(/\s+/)
    .filter((word) => word !== "")
    .every((word) => haystack.includes(word));
}
