// Path-based routing with the History API; the server answers index.html for every UI path.

type Listener = () => void;
let listener: Listener = () => {};

export function onNavigate(l: Listener): void {
  listener = l;
}

export function navigate(path: string, replaceState = false): void {
  if (replaceState) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  listener();
}

/** Same-origin links marked `data-link` navigate without a page load. */
export function interceptLinks(): void {
  document.addEventListener("click", (event) => {
    const a = (event.target as Element | null)?.closest?.("a[data-link]");
    if (!(a instanceof HTMLAnchorElement) || event.defaultPrevented) return;
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate(a.pathname);
  });
  window.addEventListener("popstate", () => listener());
}
