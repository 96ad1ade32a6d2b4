import { ApiError, Session, api, isTerminal } from "../api";
import { clearMessages, h, replace, showError } from "../dom";
import { navigate } from "../router";

const LAUNCH_TIMEOUT_MS = 120_000;

export function catalogPage(root: HTMLElement): () => void {
  let cancelled = false;
  const list = h("ul", { class: "catalog", "aria-busy": "true" });
  replace(root, h("h1", {}, "Catalog"), list);

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
      showError(e instanceof ApiError ? `Launch failed: ${e.message}` : String((e as Error).message));
      status.textContent = "";
    } finally {
      button.disabled = false;
    }
  }

  api
    .templates()
    .then((templates) => {
      list.removeAttribute("aria-busy");
      if (templates.length === 0) {
        replace(list, h("li", {}, "No templates yet."));
        return;
      }
      replace(
        list,
        ...templates.map((t) => {
          const status = h("span", { class: "launch-status", role: "status" });
          const button = h("button", { type: "button", "data-template": t.name }, "Launch");
          button.addEventListener("click", () => void launch(t.name, button, status));
          return h(
            "li",
            { class: "card" },
            h("h2", {}, t.name),
            h("p", {}, t.description || t.command.join(" ")),
            h("div", { class: "row" }, button, status),
          );
        }),
      );
    })
    .catch((e: Error) => showError(e.message));
  return () => {
    cancelled = true;
  };
}
