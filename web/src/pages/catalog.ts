import { ApiError, Me, Session, Template, api, isTerminal } from "../api";
import { clearMessages, h, replace, showError } from "../dom";
import { quotaSummary, wouldExceed } from "../quota";
import { navigate } from "../router";

const LAUNCH_TIMEOUT_MS = 120_000;

export function catalogPage(root: HTMLElement): () => void {
  let cancelled = false;
  const list = h("ul", { class: "catalog", "aria-busy": "true" });
  const quota = h("p", { id: "quota-summary", class: "muted" });
  replace(root, h("h1", {}, "Catalog"), quota, list);
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
      replace(list, h("li", {}, "No templates yet."));
      return;
    }
    replace(list, ...templates.map(card));
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
      h("h2", {}, t.name),
      h("p", {}, t.description || t.command.join(" ")),
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
