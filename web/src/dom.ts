// A tiny DOM builder: h("button", { onclick }, "Stop") — enough for a handful of pages.

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | EventListener | null | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el: Element, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces everything inside `el`. */
export function replace(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

/** "2026-11-24 12:51:23" in the user's time zone, or an em dash. */
export function time(iso: string | null | undefined): string {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const pad = (n: number) => String(n).padStart(2, "0");
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

export function shortId(id: string | null | undefined): string {
  return id ? id.slice(-8) : "—";
}

export function badge(text: string): HTMLSpanElement {
  return h("span", { class: `badge badge-${text}` }, text);
}

/** The page-wide message area: errors (role=alert) and notices. */
export function showError(message: string): void {
  const box = document.getElementById("messages");
  if (!box) return;
  replace(box, h("p", { class: "error", role: "alert" }, message));
}

export function showNotice(message: string): void {
  const box = document.getElementById("messages");
  if (!box) return;
  replace(box, h("p", { class: "notice", role: "status" }, message));
}

export function clearMessages(): void {
  const box = document.getElementById("messages");
  if (box) box.replaceChildren();
}

/** Polls `tick` every `ms` until the returned stop function is called; one tick at a time. */
export function poll(tick: () => Promise<void>, ms: number): () => void {
  let stopped = false;
  let timer: number | undefined;
  const run = async () => {
    if (stopped) return;
    try {
      await tick();
    } finally {
      if (!stopped) timer = window.setTimeout(run, ms);
    }
  };
  void run();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}

/**
 * Runs one action of a page's row or form: clears old messages, then refreshes the page's data
 * and shows `done` on success, or says `label failed: …` on error.
 */
export async function runAction(
  label: string,
  call: () => Promise<unknown>,
  refresh: () => Promise<void>,
  done?: string,
): Promise<void> {
  clearMessages();
  try {
    await call();
    await refresh();
    if (done) showNotice(done);
  } catch (e) {
    showError(`${label} failed: ${(e as Error).message}`);
  }
}

/**
 * Wraps a page's `refresh` so that only the newest call renders: answers can arrive out of
 * order (the page's first load may be answered after the load that follows a change), and an
 * older answer must not overwrite a newer one. `load` fetches; `render` draws what it fetched.
 */
export function newestOnly<T>(load: () => Promise<T>, render: (data: T) => void): () => Promise<void> {
  let newest = 0;
  return async () => {
    const mine = ++newest;
    const data = await load();
    if (mine === newest) render(data);
  };
}
