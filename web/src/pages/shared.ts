// A share link's page, `/shared/{id}`: a signed-in user (the router sends anyone else to sign
// in and back here) watches, or controls, someone else's session through the link. The link's
// mode comes with the viewer ticket; view-only shows a badge and sends no input (noVNC's
// viewOnly, no resizing, no clipboard tools) — the server drops it anyway. A control link gets
// the owner's viewer's clipboard tools (the tunnel holds them to the session's clipboard rule,
// worked out for the watcher) but no files panel: file transfer is the owner's (and
// operators'), as the API's authorization says. Why the link cannot be used (revoked, expired,
// for other people) or why the stream ended (the owner disconnected the watcher, revoked the
// link, the session stopped) is said in words: the server's close reason.

import RFB from "@novnc/novnc";
import { ApiError, ConnectTicket, api, websocketUrl } from "../api";
import { clipboardTools } from "../clipboard";
import { h, replace } from "../dom";

// waiting: the shared session is not running now; refused: the link cannot be used.
type ViewState = "loading" | "waiting" | "connecting" | "connected" | "disconnected" | "refused";

/** How often the page tries again while the shared session is not running. */
const RETRY_MS = 3000;

/** What the page says when the server refuses the link, by error code. */
const REFUSALS: Record<string, string> = {
  share_revoked: "This share link was revoked by the session's owner.",
  share_expired: "This share link has expired. Ask the session's owner for a new one.",
  forbidden: "This share link is for other people. Ask the session's owner to add you.",
  not_found: "There is no such share link. Check the address you were given.",
  session_ended: "The shared session has ended.",
};

export function sharedPage(root: HTMLElement, shareId: string): () => void {
  let rfb: RFB | null = null;
  let closed = false;
  let retry: number | undefined;

  const status = h("p", { class: "viewer-status", role: "status", "aria-live": "polite" }, "Opening the share link…");
  const modeBadge = h("span", { class: "badge", id: "share-mode", role: "note", hidden: true });
  const recordingBadge = h(
    "span",
    { class: "badge badge-recording", id: "recording-badge", role: "note", hidden: true },
    "● Recorded",
  );
  const screen = h("div", { class: "screen", id: "screen", "aria-label": "Shared remote desktop" });
  const reconnect = h("button", { type: "button", hidden: true }, "Connect again");
  const fullscreen = h("button", { type: "button" }, "Full screen");
  const clipboard = clipboardTools(
    () => rfb,
    (message) => (status.textContent = message),
  );
  // Filled once the link's mode is known: a view-only page has no tools at all.
  const tools = h("div", { class: "viewer-tools", id: "shared-tools" });
  const view = h(
    "section",
    { class: "viewer", "data-view-state": "loading", "aria-labelledby": "shared-title" },
    h(
      "div",
      { class: "row spread" },
      h("h1", { id: "shared-title" }, "Shared session ", modeBadge, " ", recordingBadge),
      h("div", { class: "row" }, reconnect, fullscreen),
    ),
    status,
    screen,
    tools,
  );
  replace(root, view);

  const setState = (state: ViewState, message: string, code?: string) => {
    view.dataset.viewState = state;
    if (code) view.dataset.reason = code;
    else delete view.dataset.reason;
    status.textContent = message;
    status.className = `viewer-status state-${state === "refused" ? "unavailable" : state}`;
    reconnect.hidden = state !== "disconnected";
  };

  const disconnectRfb = () => {
    if (rfb) {
      const old = rfb;
      rfb = null;
      old.disconnect();
    }
    screen.replaceChildren();
  };

  const showMode = (ticket: ConnectTicket) => {
    const viewOnly = ticket.mode === "view_only";
    view.dataset.mode = ticket.mode;
    modeBadge.hidden = false;
    modeBadge.textContent = viewOnly ? "View only" : "Control";
    modeBadge.className = `badge badge-${viewOnly ? "view-only" : "control"}`;
    modeBadge.title = viewOnly
      ? "You are watching: your keyboard and mouse do not reach the session"
      : "Your keyboard and mouse reach the session";
    recordingBadge.hidden = !ticket.recorded;
    if (viewOnly) tools.replaceChildren();
    else
      replace(
        tools,
        clipboard.element,
        h("p", { class: "muted" }, "Moving files in and out of the session is left to its owner."),
      );
  };

  async function connect() {
    if (closed) return;
    window.clearTimeout(retry);
    disconnectRfb();
    setState("connecting", "Opening the share link…");
    let ticket: ConnectTicket;
    try {
      ticket = await api.connectShare(shareId);
    } catch (e) {
      if (closed) return;
      const code = e instanceof ApiError ? e.code : "network";
      if (code === "session_not_running") {
        setState("waiting", "The shared session is not running right now; this page connects when it is.", code);
        retry = window.setTimeout(() => void connect(), RETRY_MS);
        return;
      }
      const known = REFUSALS[code] ?? (e instanceof ApiError && e.status === 404 ? REFUSALS.not_found : undefined);
      setState("refused", known ?? `Cannot open the share link: ${(e as Error).message}`, code);
      return;
    }
    if (closed) return;
    showMode(ticket);
    clipboard.follow(ticket.clipboard ?? "both");
    const viewOnly = ticket.mode === "view_only";
    // The page opens the WebSocket itself so that it hears the server's close reason (noVNC's
    // disconnect event does not carry it).
    const socket = new WebSocket(websocketUrl(ticket.url));
    let closeReason = "";
    socket.addEventListener("close", (event) => {
      closeReason = event.reason;
    });
    const client = new RFB(screen, socket, { shared: true });
    rfb = client;
    client.viewOnly = viewOnly;
    client.resizeSession = !viewOnly;
    client.scaleViewport = true;
    client.background = "#1e1e1e";
    if (!viewOnly) clipboard.attach(client);
    client.addEventListener("connect", () => {
      if (rfb !== client) return;
      setState(
        "connected",
        viewOnly ? "Connected: you are watching; the session does not take your input." : "Connected, with control.",
      );
      if (!viewOnly) client.focus();
    });
    client.addEventListener("disconnect", (event) => {
      if (rfb !== client) return;
      rfb = null;
      const clean = (event as CustomEvent<{ clean: boolean }>).detail?.clean;
      // The close event may come after noVNC's: give it its turn first.
      window.setTimeout(() => {
        if (closed) return;
        const reason = closeReason.trim();
        if (reason) setState("disconnected", `Disconnected: ${reason}.`, "closed");
        else setState("disconnected", clean ? "Disconnected." : "The connection was lost.");
      }, 0);
    });
    client.addEventListener("securityfailure", (event) => {
      const reason = (event as CustomEvent<{ reason?: string }>).detail?.reason;
      setState("disconnected", `The session refused the connection${reason ? `: ${reason}` : ""}.`);
    });
  }

  reconnect.addEventListener("click", () => void connect());
  fullscreen.addEventListener("click", () => {
    screen.requestFullscreen().catch(() => {
      status.textContent = "Full screen is not available here.";
    });
  });

  void connect();
  return () => {
    closed = true;
    window.clearTimeout(retry);
    disconnectRfb();
  };
}
