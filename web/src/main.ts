import "./style.css";
import { Role, api, setUnauthorizedHandler } from "./api";
import { clearMessages, h, replace, showError } from "./dom";
import { accountPage } from "./pages/account";
import { agentsPage } from "./pages/agents";
import { overviewPage } from "./pages/overview";
import { auditPage } from "./pages/audit";
import { catalogPage } from "./pages/catalog";
import { commandsPage } from "./pages/commands";
import { groupsPage } from "./pages/groups";
import { sessionsPage } from "./pages/sessions";
import { templatesPage } from "./pages/templates";
import { signInPage } from "./pages/signin";
import { tokensPage } from "./pages/tokens";
import { totpPage } from "./pages/totp";
import { usersPage } from "./pages/users";
import { viewerPage } from "./pages/viewer";
import { playbackPage } from "./pages/playback";
import { recordingsPage } from "./pages/recordings";
import { sharedPage } from "./pages/shared";
import { interceptLinks, navigate, onNavigate } from "./router";
import { may, setSignedInUser, signedInUser } from "./session";

type Page = (root: HTMLElement, ...params: string[]) => (() => void) | void;

interface Route {
  pattern: RegExp;
  page: Page;
  title: string;
  /** The least role that may open the page (the API decides anyway; this keeps the UI honest). */
  role: Role;
  /** Shown in the main navigation under this name (else reached from a link). */
  nav?: string;
  href?: string;
  /** The least role whose navigation shows the link, when more than may open the page. */
  navRole?: Role;
}

const routes: Route[] = [
  { pattern: /^\/(?:catalog)?$/, page: catalogPage, title: "Catalog", role: "user", nav: "Catalog", href: "/catalog" },
  { pattern: /^\/sessions$/, page: sessionsPage, title: "My sessions", role: "user", nav: "My sessions", href: "/sessions" },
  { pattern: /^\/overview$/, page: overviewPage, title: "Overview", role: "operator", nav: "Overview", href: "/overview" },
  { pattern: /^\/agents$/, page: agentsPage, title: "Agents", role: "operator", nav: "Agents", href: "/agents" },
  { pattern: /^\/templates$/, page: templatesPage, title: "Templates", role: "operator", nav: "Templates", href: "/templates" },
  { pattern: /^\/commands$/, page: commandsPage, title: "Commands", role: "user", nav: "Commands", href: "/commands" },
  { pattern: /^\/users$/, page: usersPage, title: "Users", role: "admin", nav: "Users", href: "/users" },
  { pattern: /^\/groups$/, page: groupsPage, title: "Groups", role: "admin", nav: "Groups", href: "/groups" },
  // Everyone may read their own entries (the API filters); only admins get the link.
  { pattern: /^\/audit$/, page: auditPage, title: "Audit log", role: "user", nav: "Audit", href: "/audit", navRole: "admin" },
  { pattern: /^\/account$/, page: accountPage, title: "Profile", role: "user" },
  { pattern: /^\/tokens$/, page: tokensPage, title: "API tokens", role: "user" },
  { pattern: /^\/totp$/, page: totpPage, title: "Two-step sign-in", role: "user" },
  { pattern: /^\/view\/([0-9a-fA-F-]{36})$/, page: viewerPage, title: "Viewer", role: "user" },
  // A share link: someone not signed in signs in first and comes back here.
  { pattern: /^\/shared\/([0-9a-fA-F-]{36})$/, page: sharedPage, title: "Shared session", role: "user" },
  { pattern: /^\/sessions\/([0-9a-fA-F-]{36})\/recordings$/, page: recordingsPage, title: "Recordings", role: "user" },
  { pattern: /^\/recordings\/([0-9a-fA-F-]{36})$/, page: playbackPage, title: "Playback", role: "user" },
];

let cleanup: (() => void) | void;
let returnTo = "/sessions";

/** The main navigation and the user menu, for the signed-in user's role. */
function renderHeader(nav: HTMLElement, path: string): void {
  const user = signedInUser();
  nav.hidden = user === null;
  if (!user) {
    nav.replaceChildren();
    return;
  }
  const links = routes
    .filter((r) => r.nav && may(r.navRole ?? r.role))
    .map((r) => {
      const current = r.href === path || (path === "/" && r.href === "/catalog");
      return h("a", { href: r.href, "data-link": true, "aria-current": current ? "page" : null }, r.nav);
    });
  const signOut = h("button", { type: "button", id: "sign-out", class: "link" }, "Sign out");
  signOut.addEventListener("click", () => void signOutNow());
  const menu = h(
    "div",
    { id: "user-menu", class: "user-menu", role: "group", "aria-label": "Signed-in user" },
    h(
      "span",
      { id: "signed-in-as", "data-username": user.username, "data-role": user.role },
      "Signed in as ",
      h("strong", {}, user.username),
      " ",
      h("span", { class: `badge badge-role-${user.role}` }, user.role),
    ),
    h("a", { href: "/account", "data-link": true, "aria-current": path === "/account" ? "page" : null }, "Profile"),
    h("a", { href: "/tokens", "data-link": true, "aria-current": path === "/tokens" ? "page" : null }, "API tokens"),
    h("a", { href: "/totp", "data-link": true, "aria-current": path === "/totp" ? "page" : null }, "Two-step sign-in"),
    signOut,
  );
  replace(nav, ...links, menu);
}

function render(): void {
  const root = document.getElementById("app");
  const nav = document.getElementById("nav");
  if (!root || !nav) return;
  if (cleanup) cleanup();
  cleanup = undefined;
  clearMessages();
  const path = window.location.pathname;
  renderHeader(nav, path);
  if (!signedInUser()) {
    // Come back to the page asked for (e.g. a viewer link) after signing in.
    if (path !== "/signin") {
      if (path !== "/") returnTo = path;
      history.replaceState(null, "", "/signin");
    }
    document.title = "Sign in · StreamSpace";
    signInPage(
      root,
      (user) => {
        setSignedInUser(user);
        navigate(returnTo);
      },
      returnTo,
    );
    return;
  }
  if (path === "/signin") {
    navigate("/sessions", true);
    return;
  }
  for (const route of routes) {
    const match = route.pattern.exec(path);
    if (!match) continue;
    document.title = `${route.title} · StreamSpace`;
    if (!may(route.role)) {
      replace(
        root,
        h("h1", {}, route.title),
        h(
          "p",
          { class: "error", role: "alert", "data-forbidden": "true" },
          `This page is not available to you: it needs the ${route.role} role.`,
        ),
      );
      return;
    }
    cleanup = route.page(root, ...match.slice(1));
    return;
  }
  document.title = "Not found · StreamSpace";
  root.replaceChildren();
  showError(`There is no page at ${path}.`);
}

async function signOutNow(): Promise<void> {
  try {
    await api.logout();
  } catch {
    // Signed out already (401) or the server is gone: either way the page forgets the user.
  }
  setSignedInUser(null);
  returnTo = "/sessions";
  navigate("/signin");
}

setUnauthorizedHandler(() => {
  if (!signedInUser()) return;
  setSignedInUser(null);
  render();
  showError("Your sign-in has ended; sign in again.");
});

onNavigate(render);
interceptLinks();

// Whether a browser session (the cookie) is already signed in decides the first page.
api
  .me()
  .then(({ user }) => setSignedInUser(user))
  .catch(() => setSignedInUser(null))
  .finally(render);
