import "./style.css";
import { clearToken, getToken, setUnauthorizedHandler } from "./api";
import { clearMessages, showError } from "./dom";
import { agentsPage } from "./pages/agents";
import { catalogPage } from "./pages/catalog";
import { commandsPage } from "./pages/commands";
import { sessionsPage } from "./pages/sessions";
import { signInPage } from "./pages/signin";
import { viewerPage } from "./pages/viewer";
import { interceptLinks, navigate, onNavigate } from "./router";

type Page = (root: HTMLElement, ...params: string[]) => (() => void) | void;

const routes: [RegExp, Page, string][] = [
  [/^\/(?:catalog)?$/, catalogPage, "Catalog"],
  [/^\/sessions$/, sessionsPage, "My sessions"],
  [/^\/agents$/, agentsPage, "Agents"],
  [/^\/commands$/, commandsPage, "Commands"],
  [/^\/view\/([0-9a-fA-F-]{36})$/, viewerPage, "Viewer"],
];

let cleanup: (() => void) | void;
let returnTo = "/sessions";

function render(): void {
  const root = document.getElementById("app");
  const nav = document.getElementById("nav");
  if (!root || !nav) return;
  if (cleanup) cleanup();
  cleanup = undefined;
  clearMessages();
  const path = window.location.pathname;
  const signedIn = getToken() !== null;
  nav.hidden = !signedIn;
  if (!signedIn) {
    // Come back to the page asked for (e.g. a viewer link) after signing in.
    if (path !== "/signin") {
      if (path !== "/") returnTo = path;
      history.replaceState(null, "", "/signin");
    }
    document.title = "Sign in · StreamSpace";
    signInPage(root, returnTo);
    return;
  }
  if (path === "/signin") {
    navigate("/sessions", true);
    return;
  }
  for (const link of nav.querySelectorAll("a[data-link]")) {
    const current = (link as HTMLAnchorElement).pathname === path || (path === "/" && link.getAttribute("href") === "/catalog");
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  for (const [pattern, page, title] of routes) {
    const match = pattern.exec(path);
    if (match) {
      document.title = `${title} · StreamSpace`;
      cleanup = page(root, ...match.slice(1));
      return;
    }
  }
  document.title = "Not found · StreamSpace";
  root.replaceChildren();
  showError(`There is no page at ${path}.`);
}

setUnauthorizedHandler(() => {
  clearToken();
  render();
  showError("Your token was refused; sign in again.");
});

document.getElementById("sign-out")?.addEventListener("click", () => {
  clearToken();
  navigate("/signin");
});

onNavigate(render);
interceptLinks();
render();
