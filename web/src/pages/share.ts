// The owner's share dialog on the viewer page: make a link (view-only or with control, an
// expiry, optionally only for named users and groups), copy it, list the session's links with
// Revoke; and who watches right now (user, mode, since, replica), refreshed while the dialog is
// open, with Disconnect. The server lists the watchers of every replica.

import { ApiError, Share, ShareMode, Viewer, api } from "../api";
import { h, poll, replace, time } from "../dom";

/** How often the open dialog refreshes the watchers and links. */
const REFRESH_MS = 1500;

const EXPIRIES: [string, number][] = [
  ["15 minutes", 15 * 60],
  ["1 hour", 3600],
  ["8 hours", 8 * 3600],
  ["1 day", 24 * 3600],
  ["7 days", 7 * 24 * 3600],
];

const MODES: Record<ShareMode, string> = { view_only: "View only", control: "Control" };

/** The share link's full address, as the one who receives it opens it. */
function address(share: Share): string {
  return new URL(share.link, window.location.origin).toString();
}

/** A comma- or space-separated list, without empties. */
function names(text: string): string[] {
  return text
    .split(/[\s,]+/)
    .map((n) => n.trim())
    .filter((n) => n !== "");
}

/** The share dialog of session `sessionId`: its button, and the dialog it opens. */
export function shareDialog(sessionId: string): { button: HTMLButtonElement; dialog: HTMLDialogElement; close: () => void } {
  const mode = h(
    "select",
    { id: "share-mode-choice" },
    h("option", { value: "view_only", selected: true }, MODES.view_only),
    h("option", { value: "control" }, MODES.control),
  );
  const expiry = h(
    "select",
    { id: "share-expiry" },
    ...EXPIRIES.map(([label, secs]) => h("option", { value: secs, selected: secs === 3600 }, label)),
  );
  const users = h("input", { id: "share-users", type: "text", placeholder: "anyone signed in", autocomplete: "off" });
  const groups = h("input", { id: "share-groups", type: "text", placeholder: "anyone signed in", autocomplete: "off" });
  const create = h("button", { type: "submit" }, "Create link");
  const form = h(
    "form",
    { class: "form-row", id: "share-form" },
    h("label", { for: "share-mode-choice" }, "Mode", mode),
    h("label", { for: "share-expiry" }, "Expires after", expiry),
    h("label", { for: "share-users" }, "Only these users", users),
    h("label", { for: "share-groups" }, "Only these groups", groups),
    create,
  );
  // The made link, always visible and selectable: the fallback where the Clipboard API is refused.
  const made = h("input", { id: "share-link-url", type: "text", readonly: true, "aria-label": "The new share link" });
  const copy = h("button", { type: "button", id: "share-copy" }, "Copy link");
  const copied = h("span", { class: "muted", role: "status", "aria-live": "polite" });
  const madeRow = h("div", { class: "row share-made", hidden: true }, made, copy, copied);
  const message = h("p", { class: "error", role: "alert", hidden: true });
  const links = h("tbody", { id: "share-links" });
  const watchers = h("tbody", { id: "watchers" });
  const table = (label: string, columns: string[], body: HTMLElement) =>
    h(
      "table",
      { "aria-label": label },
      h("thead", {}, h("tr", {}, ...columns.map((c) => h("th", { scope: "col" }, c)))),
      body,
    );
  const closeButton = h("button", { type: "button", class: "link" }, "Close");
  const dialog = h(
    "dialog",
    { class: "share-dialog", id: "share-dialog", "aria-labelledby": "share-title" },
    h("div", { class: "row spread" }, h("h2", { id: "share-title" }, "Share this session"), closeButton),
    form,
    madeRow,
    message,
    h("h3", {}, "Watching now"),
    table("Watchers", ["User", "Mode", "Since", "Replica", ""], watchers),
    h("h3", {}, "Links"),
    table("Share links", ["Link", "Mode", "For", "Expires", "State", ""], links),
  );
  const button = h("button", { type: "button", id: "share-open" }, "Share…");

  const fail = (what: string, e: unknown) => {
    message.hidden = false;
    message.textContent = `${what} failed: ${e instanceof ApiError ? e.message : String(e)}`;
  };

  const linkRow = (share: Share) => {
    const now = Date.now();
    const state = share.revoked_at ? "revoked" : new Date(share.expires_at).getTime() <= now ? "expired" : "active";
    const who = [...share.users, ...share.groups.map((g) => `group ${g}`)].join(", ") || "anyone signed in";
    const revoke = h("button", { type: "button", "data-action": "revoke", hidden: state !== "active" }, "Revoke");
    revoke.addEventListener("click", async () => {
      revoke.disabled = true;
      try {
        await api.revokeShare(sessionId, share.id);
        await refresh();
      } catch (e) {
        fail("Revoking the link", e);
      } finally {
        revoke.disabled = false;
      }
    });
    return h(
      "tr",
      { "data-share": share.id, "data-state": state },
      h("td", {}, h("code", { class: "secret" }, address(share))),
      h("td", {}, MODES[share.mode]),
      h("td", {}, who),
      h("td", {}, time(share.expires_at)),
      h("td", {}, state),
      h("td", { class: "actions" }, revoke),
    );
  };

  const watcherRow = (viewer: Viewer) => {
    const disconnect = h("button", { type: "button", "data-action": "disconnect" }, "Disconnect");
    disconnect.addEventListener("click", async () => {
      disconnect.disabled = true;
      try {
        await api.disconnectViewer(sessionId, viewer.id);
        await refresh();
      } catch (e) {
        fail("Disconnecting the watcher", e);
      } finally {
        disconnect.disabled = false;
      }
    });
    return h(
      "tr",
      { "data-viewer": viewer.id, "data-user": viewer.user, "data-mode": viewer.mode },
      h("td", {}, viewer.user, viewer.share_id ? null : h("span", { class: "muted" }, " (owner's viewer)")),
      h("td", {}, MODES[viewer.mode]),
      h("td", {}, time(viewer.since)),
      h("td", {}, viewer.replica),
      h("td", { class: "actions" }, disconnect),
    );
  };

  const empty = (columns: number, text: string) => h("tr", {}, h("td", { colspan: columns }, text));

  async function refresh(): Promise<void> {
    const [viewers, shares] = await Promise.all([api.viewers(sessionId), api.shares(sessionId)]);
    replace(watchers, ...(viewers.length ? viewers.map(watcherRow) : [empty(5, "Nobody is watching.")]));
    const newest = [...shares].reverse();
    replace(links, ...(newest.length ? newest.map(linkRow) : [empty(6, "No links yet.")]));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.hidden = true;
    create.disabled = true;
    try {
      const share = await api.createShare(sessionId, {
        mode: mode.value as ShareMode,
        expires_in_secs: Number(expiry.value),
        users: names(users.value),
        groups: names(groups.value),
      });
      made.value = address(share);
      madeRow.hidden = false;
      copied.textContent = "";
      await refresh();
    } catch (e) {
      fail("Creating the link", e);
    } finally {
      create.disabled = false;
    }
  });

  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(made.value);
      copied.textContent = "Copied.";
    } catch {
      made.focus();
      made.select();
      copied.textContent = "The browser did not let the page copy: copy the selected link yourself.";
    }
  });

  let stopRefreshing: (() => void) | null = null;
  const stop = () => {
    stopRefreshing?.();
    stopRefreshing = null;
  };
  button.addEventListener("click", () => {
    message.hidden = true;
    dialog.showModal();
    stop();
    stopRefreshing = poll(async () => {
      try {
        await refresh();
      } catch (e) {
        fail("Refreshing", e);
      }
    }, REFRESH_MS);
  });
  const close = () => {
    stop();
    if (dialog.open) dialog.close();
  };
  closeButton.addEventListener("click", close);
  dialog.addEventListener("close", stop);

  return { button, dialog, close };
}
