// The clipboard tools beside a remote desktop, for every page that controls one: the owner's
// viewer and the page of a control share link (a view-only link's page has none — the tunnel
// drops a watcher's cut text anyway). What the session copies lands in a box and, where the
// browser lets the page use the system clipboard (a secure origin, with permission), on the
// user's clipboard too; "Send to session" pastes the box, "Paste from your clipboard" pastes
// the user's. The box is the way that always works. The tunnel enforces the session's
// clipboard rule whatever the page does.

import RFB from "@novnc/novnc";
import type { ClipboardPolicy } from "./api";
import { h } from "./dom";

export interface ClipboardTools {
  /** The box and its buttons, to place on the page. */
  element: HTMLElement;
  /** Follows what `rfb`'s session copies; call once per connection. */
  attach: (rfb: RFB) => void;
  /**
   * Offers only what the viewer's clipboard rule allows (the connect answer's `clipboard`),
   * and says what is off.
   */
  follow: (policy: ClipboardPolicy) => void;
}

/** What the page says about the clipboard under each rule. */
const EXPLAINED: Record<ClipboardPolicy, string> = {
  both: "Clipboard (the session's copies appear here; edit and send to paste)",
  to_session: "Clipboard (paste into the session; copying out of it is off for this session)",
  from_session: "Clipboard (the session's copies appear here; pasting into it is off for this session)",
  none: "The clipboard is off for this session.",
};

/**
 * The tools for the connection `current` returns (null while there is none); `say` tells the
 * user why the browser refused to read their clipboard.
 */
export function clipboardTools(current: () => RFB | null, say: (message: string) => void): ClipboardTools {
  const box = h("textarea", { id: "clipboard", rows: 3, spellcheck: "false" });
  const send = h("button", { type: "button" }, "Send to session");
  const pasteLocal = h("button", { type: "button", hidden: !navigator.clipboard }, "Paste from your clipboard");
  const label = h("label", { for: "clipboard", id: "clipboard-rule" }, EXPLAINED.both);
  const buttons = h("div", { class: "row" }, send, pasteLocal);
  const element = h("div", { class: "clipboard" }, label, box, buttons);

  const paste = (text: string) => {
    const rfb = current();
    if (!rfb) return;
    rfb.clipboardPasteFrom(text);
    rfb.focus();
  };
  send.addEventListener("click", () => paste(box.value));
  pasteLocal.addEventListener("click", async () => {
    let text: string;
    try {
      text = await navigator.clipboard.readText();
    } catch {
      say("The browser did not let the page read your clipboard: paste into the box instead.");
      return;
    }
    box.value = text;
    paste(text);
  });

  const attach = (rfb: RFB) => {
    rfb.addEventListener("clipboard", (event) => {
      if (current() !== rfb) return;
      const text = (event as CustomEvent<{ text: string }>).detail.text;
      box.value = text;
      // Refused without permission or focus: the box has it anyway.
      navigator.clipboard?.writeText(text).catch(() => {});
    });
  };

  const follow = (policy: ClipboardPolicy) => {
    label.textContent = EXPLAINED[policy] ?? EXPLAINED.both;
    element.dataset.clipboard = policy;
    box.hidden = policy === "none";
    buttons.hidden = policy === "none" || policy === "from_session";
  };

  return { element, attach, follow };
}
