// The viewer: noVNC's RFB class on the session's WebSocket, with scaling, clipboard and full
// screen. It asks for a one-time connect ticket, and tells the user plainly when the session is
// not running (with Wake for a hibernated one).

import RFB from "@novnc/novnc";
import { ApiError, Session, api, isTerminal, websocketUrl } from "../api";
import { clipboardTools } from "../clipboard";
import { h, poll, replace } from "../dom";
import { filesPanel } from "./files";
import { shareDialog } from "./share";

// waiting: the session is on its way to running (starting, waking); unavailable: it is not.
type ViewState = "loading" | "waiting" | "connecting" | "connected" | "disconnected" | "unavailable";

export function viewerPage(root: HTMLElement, id: string): () => void {
  let rfb: RFB | null = null;
  let closed = false;

  const status = h("p", { class: "viewer-status", role: "status", "aria-live": "polite" }, "Loading…");
  const screen = h("div", { class: "screen", id: "screen", "aria-label": "Remote desktop" });
  // The remote desktop follows the window (the session's display is resized to the viewer);
  // scaling is the fallback for sessions whose VNC server cannot resize. Both are remembered.
  const scale = h("input", { type: "checkbox", id: "scale", checked: preference("scale") });
  const resize = h("input", { type: "checkbox", id: "resize", checked: preference("resize") });
  const clipboard = clipboardTools(
    () => rfb,
    (message) => (status.textContent = message),
  );
  const fullscreen = h("button", { type: "button" }, "Full screen");
  // Asks for the viewing to be recorded (honoured where the session's policy is "on request");
  // the badge shows whenever the server says this viewing is recorded, asked or not.
  const askRecord = h("input", { type: "checkbox", id: "ask-record" });
  const recordingBadge = h(
    "span",
    { class: "badge badge-recording", id: "recording-badge", role: "note", hidden: true },
    "● Recorded",
  );
  const reconnect = h("button", { type: "button", hidden: true }, "Connect again");
  const wake = h("button", { type: "button", hidden: true }, "Wake session");
  const files = filesPanel(id);
  const share = shareDialog(id);
  const view = h(
    "section",
    { class: "viewer", "data-view-state": "loading", "aria-labelledby": "viewer-title" },
    h(
      "div",
      { class: "row spread" },
      h("h1", { id: "viewer-title" }, "Session ", h("code", {}, id.slice(-8)), " ", recordingBadge),
      h("div", { class: "row" }, reconnect, wake, share.button, fullscreen, h("a", { href: "/sessions", "data-link": "" }, "My sessions")),
    ),
    status,
    screen,
    h(
      "div",
      { class: "viewer-tools" },
      h("label", { class: "inline" }, scale, " Scale to fit"),
      h("label", { class: "inline" }, resize, " Resize the remote desktop to the window"),
      h("label", { class: "inline" }, askRecord, " Record this viewing (reconnects)"),
      clipboard.element,
    ),
    files.element,
    share.dialog,
  );
  replace(root, view);

  const setState = (state: ViewState, message: string) => {
    view.dataset.viewState = state;
    status.textContent = message;
    status.className = `viewer-status state-${state}`;
    reconnect.hidden = state !== "disconnected";
  };

  const notRunning = (session: Session) => {
    wake.hidden = session.state !== "hibernated";
    const reason = session.error_message ? ` (${session.error_message})` : "";
    if (session.state === "pending" || session.state === "starting") {
      setState("waiting", "This session is still starting…");
      return;
    }
    const message: Record<string, string> = {
      hibernated: "This session is hibernated. Wake it to connect.",
      terminated: "This session has ended.",
      failed: `This session failed${reason}.`,
    };
    setState("unavailable", message[session.state] ?? `This session is ${session.state}.`);
  };

  const disconnectRfb = () => {
    if (rfb) {
      const old = rfb;
      rfb = null;
      old.disconnect();
    }
    screen.replaceChildren();
  };

  async function connect() {
    if (closed) return;
    disconnectRfb();
    setState("loading", "Checking the session…");
    let session: Session;
    try {
      session = await api.session(id);
    } catch (e) {
      setState("unavailable", e instanceof ApiError ? e.message : String(e));
      return;
    }
    if (session.state !== "running") {
      notRunning(session);
      return;
    }
    wake.hidden = true;
    void files.refresh();
    setState("connecting", "Connecting…");
    let url: string;
    try {
      const ticket = await api.connect(id, askRecord.checked);
      recordingBadge.hidden = !ticket.recorded;
      clipboard.follow(ticket.clipboard ?? "both");
      recordingBadge.title = ticket.recorded ? "This viewing is being recorded" : "";
      url = websocketUrl(ticket.url);
    } catch (e) {
      setState("disconnected", `Cannot connect: ${(e as Error).message}`);
      return;
    }
    if (closed) return;
    const client = new RFB(screen, url, { shared: true });
    rfb = client;
    client.scaleViewport = scale.checked;
    client.resizeSession = resize.checked;
    client.background = "#1e1e1e";
    client.addEventListener("connect", () => {
      if (rfb !== client) return;
      setState("connected", "Connected.");
      client.focus();
    });
    client.addEventListener("disconnect", async (event) => {
      if (rfb !== client) return;
      rfb = null;
      const clean = (event as CustomEvent<{ clean: boolean }>).detail?.clean;
      // Tell "the session stopped" apart from "the connection dropped".
      const now = await api.session(id).catch(() => null);
      if (now && now.state !== "running") notRunning(now);
      else setState("disconnected", clean ? "Disconnected." : "The connection was lost.");
    });
    client.addEventListener("securityfailure", (event) => {
      const reason = (event as CustomEvent<{ reason?: string }>).detail?.reason;
      setState("disconnected", `The session refused the connection${reason ? `: ${reason}` : ""}.`);
    });
    clipboard.attach(client);
  }

  scale.addEventListener("change", () => {
    remember("scale", scale.checked);
    if (rfb) rfb.scaleViewport = scale.checked;
  });
  resize.addEventListener("change", () => {
    remember("resize", resize.checked);
    if (rfb) rfb.resizeSession = resize.checked;
  });
  fullscreen.addEventListener("click", () => {
    screen.requestFullscreen().catch(() => {
      status.textContent = "Full screen is not available here.";
    });
  });
  reconnect.addEventListener("click", () => void connect());
  askRecord.addEventListener("change", () => void connect());
  wake.addEventListener("click", async () => {
    wake.disabled = true;
    try {
      await api.wake(id);
      wake.hidden = true;
      setState("waiting", "Waking the session…");
    } catch (e) {
      setState("unavailable", `Wake failed: ${(e as Error).message}`);
    } finally {
      wake.disabled = false;
    }
  });

  void connect();
  // While not connected, follow the session: connect once it runs (again), and say so when a
  // dropped connection was the session stopping or hibernating.
  const stopWatching = poll(async () => {
    const state = view.dataset.viewState;
    if (state !== "waiting" && state !== "unavailable" && state !== "disconnected") return;
    const session = await api.session(id).catch(() => null);
    if (!session || closed || view.dataset.viewState !== state) return;
    if (session.state !== "running") notRunning(session);
    else if (state !== "disconnected") void connect();
    if (isTerminal(session.state)) wake.hidden = true;
  }, 1500);

  return () => {
    closed = true;
    stopWatching();
    share.close();
    disconnectRfb();
  };
}


type Preference = "scale" | "resize";

/** A viewer preference the user set before (both default to on). */
function preference(name: Preference): boolean {
  try {
    return localStorage.getItem(`streamspace.viewer.${name}`) !== "off";
  } catch {
    return true;
  }
}

function remember(name: Preference, on: boolean) {
  try {
    localStorage.setItem(`streamspace.viewer.${name}`, on ? "on" : "off");
  } catch {
    // Storage refused (private mode): the choice lasts for this page only.
  }
}
