// Drives the web UI in Debian's headless Chromium through Playwright (playwright-core, no
// downloaded browser). Run by crates/streamspace/tests/browser.rs against a real platform:
//
//   node web/tests/e2e.mjs --url http://127.0.0.1:PORT --token TOKEN --scenario NAME \
//        --username USER --password PASSWORD --screenshot OUT.png \
//        [--marker M --marker-file PATH] [--new-user NAME --new-password P --other-session ID]
//        [--group NAME] [--template NAME] [--keep-user NAME --delete-user NAME]
//
// The browser signs in with USER and PASSWORD; TOKEN (an admin token) is only for the API calls
// the driver makes itself.
//
// Scenarios:
//   lifecycle   sign in (a wrong password first); the catalog groups a template made for the
//               test under its category and finds it by a tag; on the Templates page a bad tag
//               is refused with the field named, then xterm gets a category and tags, which the
//               catalog shows; launch xterm from the catalog, then on
//               "My sessions" hibernate, wake (in the viewer) and stop it, following the live
//               state; the remote desktop takes the viewer's size and follows the window when
//               it shrinks and grows; agents and commands pages show the agent and the commands.
//   keystrokes  sign in, launch xterm, wait for the noVNC viewer to connect, click into it and
//               type `echo MARKER > PATH` + Enter; wait until PATH holds MARKER. Then the
//               clipboard both ways: `echo MARKER > PATH.pasted` sent from the clipboard box
//               pastes into xterm (middle click + Enter), and xterm's first line, selected with a
//               drag, appears in the clipboard box and on the browser's clipboard, and the
//               paste button takes the browser's clipboard.
//               Finally, stopping the session ends the viewer with a clear message.
//   users       an admin (USER) creates the user NEW-USER on the Users page and puts them in a
//               group; NEW-USER signs in in a fresh browser context, sees the catalog but not the
//               admin pages (no links; their URLs say the page is not available) nor an Audit
//               link, opens their own audit entries from the profile (only theirs), launches
//               xterm and sees only that session on "My sessions" (not OTHER-SESSION, the
//               admin's), creates and revokes an API token, and signs out.
//   quotas      USER (an admin) sets a quota (one session, 3072 MiB) on the group GROUP on the
//               Groups page, sees it apply to NEW-USER (a member) on the Users page, sets and
//               clears a limit on NEW-USER; NEW-USER signs in, sees the limit on their profile and
//               the catalog, launches xterm, is then warned that another launch would exceed the
//               quota (memory counted with the server's default size) and is refused it with a
//               clear message.
//   audit       USER (an admin) creates the group GROUP on the Groups page, then on the Audit page
//               sees their own sign-in and that change, filters by action (GROUP first; the
//               driver's caller made more than a page of group.create entries) and pages Older
//               and Newer; filters by actor.
//   totp        USER turns on two-step sign-in: the QR code shown reads back (decoded from the
//               page's pixels) as the otpauth link; a code computed from the secret shown turns
//               it on; signs in again with a code; turns it off with the password.
//   sso         a made-up callback lands on the sign-in page with an explanation; then
//               on the sign-in page, the button of the single sign-on provider (--provider-id)
//               leads to the provider's own login page; signing in there as USER (any
//               password) comes back signed in as USER (--expect-username), who launches xterm
//               and sees the desktop in the noVNC viewer.
//   files       sign in, launch xterm; drop a file named after MARKER (holding MARKER) on the
//               viewer's files panel; it is listed; its download link returns MARKER.
//   sharing     USER launches xterm and, in the viewer's share dialog, makes a view-only link;
//               NEW-USER opens it in a fresh browser context, is sent to sign in, comes back to
//               the link and sees the desktop with the "View only" badge; their clicks and keys
//               send no input message (the frames their page sends are read); USER sees them in
//               the dialog's watchers and disconnects them, and their page says so; USER revokes
//               the link, and connecting again is refused as revoked. Links for other people
//               and expired links are refused with their own messages. The session list's
//               Share button opens the same dialog. The view-only page has neither clipboard
//               tools nor a files panel.
//   control     USER launches TEMPLATE (an xterm running the clipboard probe, which writes the
//               lines typed into it to MARKER-FILE) and makes a control link in the share
//               dialog; NEW-USER opens it, sees the desktop with the "Control" badge and the
//               clipboard tools but no files panel; their typing reaches the probe; MARKER sent
//               from their clipboard box is what the session's clipboard holds (the probe's
//               `paste` writes it); what the session copies (`copy …`) appears in their box.
//               The API refuses them the session's files (404, as for anyone else's session).
//               The session list's share dialog shows them watching with control.
//   homes       USER (an admin) deletes KEEP-USER and DELETE-USER, who each have a home, on
//               the Users page: after the browser's "Delete …?" confirmation, the page asks
//               what to do with the home; KEEP-USER's is kept; for DELETE-USER, Cancel first
//               leaves the user in place, then deleting again removes the home too.
//
// Prints one `step: …` line per step, and `ok: SCENARIO` at the end; exits 1 with the reason on
// stderr (and a screenshot) on failure.

import { createHmac } from "node:crypto";
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";
import { decodeQR } from "qr/decode.js";

const { values: opts } = parseArgs({
  options: {
    url: { type: "string" },
    token: { type: "string" },
    username: { type: "string" },
    password: { type: "string" },
    scenario: { type: "string" },
    screenshot: { type: "string" },
    marker: { type: "string" },
    "marker-file": { type: "string" },
    "new-user": { type: "string" },
    "new-password": { type: "string" },
    "other-session": { type: "string" },
    group: { type: "string" },
    "provider-id": { type: "string" },
    "expect-username": { type: "string" },
    template: { type: "string" },
    "keep-user": { type: "string" },
    "delete-user": { type: "string" },
    chromium: { type: "string", default: process.env.CHROMIUM ?? "/usr/bin/chromium" },
  },
});
for (const required of ["url", "token", "username", "password", "scenario", "screenshot"]) {
  if (!opts[required]) fail(`missing --${required}`);
}

const TIMEOUT = 60_000;
const step = (text) => console.log(`step: ${text}`);
const nav = (page, name) => page.locator("nav").getByRole("link", { name });

function fail(message) {
  console.error(`error: ${message}`);
  process.exit(1);
}

/** Signs in on the sign-in page; `wrongFirst` tries a wrong password before. */
async function signIn(page, username = opts.username, password = opts.password, wrongFirst = false) {
  step(`open the UI as ${username}`);
  await page.goto(opts.url);
  await page.getByLabel("Username").waitFor();
  if (wrongFirst) {
    step("a wrong password is refused");
    await page.getByLabel("Username").fill(username);
    await page.getByLabel("Password").fill("not the password");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByText("Wrong username or password.").waitFor();
  }
  step(`sign in as ${username}`);
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "My sessions" }).waitFor();
  await page.locator(`#signed-in-as[data-username="${username}"]`).waitFor();
}

/** Launches xterm from the catalog; returns the session id once the viewer page opens. */
async function launchXterm(page) {
  return launch(page, "xterm");
}

/** Launches `template` from the catalog; returns the session id once the viewer page opens. */
async function launch(page, template) {
  step(`launch ${template} from the catalog`);
  await nav(page, "Catalog").click();
  await page.locator(`button[data-template="${template}"]`).click();
  // The catalog waits for `running` before opening the viewer.
  await page.waitForURL(/\/view\/[0-9a-f-]{36}$/, { timeout: TIMEOUT });
  const id = new URL(page.url()).pathname.split("/").pop();
  step(`session ${id} is running`);
  return id;
}

async function lifecycle(page) {
  await signIn(page, opts.username, opts.password, true);
  step("an API error is shown with the message from its JSON body");
  await page.goto(`${opts.url}/view/00000000-0000-7000-8000-000000000000`);
  await page.locator('[data-view-state="unavailable"]').getByText(/session.* not found/).waitFor();

  step("the catalog groups templates by category and searches their tags");
  const probe = { name: "catalog-probe", command: ["xterm"], description: "A probe", category: "Office", tags: ["writer", "docs"], icon: "office" };
  const created = await fetch(`${opts.url}/api/v1/templates`, {
    method: "POST",
    headers: { Authorization: `Bearer ${opts.token}`, "Content-Type": "application/json" },
    body: JSON.stringify(probe),
  });
  if (!created.ok) fail(`creating the probe template: ${created.status} ${await created.text()}`);
  await nav(page, "Catalog").click();
  await page.locator('section[data-category="Office"] [data-card="catalog-probe"]').waitFor();
  await page.locator('section[data-category="Other"] [data-card="xterm"]').waitFor();
  await page.getByLabel("Search the catalog").fill("writer");
  await page.locator('[data-card="xterm"]').waitFor({ state: "detached" });
  await page.locator('[data-card="catalog-probe"]').waitFor();
  await page.getByLabel("Search the catalog").fill("no-such-thing");
  await page.getByText("No template matches your search.").waitFor();
  await page.getByLabel("Search the catalog").fill("");
  const removed = await fetch(`${opts.url}/api/v1/templates/catalog-probe`, {
    method: "DELETE",
    headers: { Authorization: `Bearer ${opts.token}` },
  });
  if (!removed.ok) fail(`deleting the probe template: ${removed.status}`);

  step("an operator edits a template on the Templates page");
  await nav(page, "Templates").click();
  await page.locator('tr[data-template-row="xterm"]').getByRole("button", { name: "Edit" }).click();
  await page.getByLabel("Tags").fill("Not A Tag");
  await page.getByRole("button", { name: "Save changes" }).click();
  await page.getByText(/tags: .*is not a tag/).waitFor();
  await page.getByLabel("Category").fill("Terminals");
  await page.getByLabel("Tags").fill("shell, console");
  await page.getByLabel("Icon").selectOption("terminal");
  await page.getByLabel("Recording", { exact: true }).selectOption("on_request");
  await page.getByLabel("Largest clipboard text (bytes)").fill("65536");
  await page.getByRole("button", { name: "Save changes" }).click();
  await page.getByText("Saved xterm.").waitFor();
  await page.locator('tr[data-template-row="xterm"]').getByRole("cell", { name: "Terminals" }).waitFor();
  await page
    .locator('td[data-rules="xterm"]')
    .getByText("clipboard ≤ 65536 B · recording: on request", { exact: true })
    .waitFor();
  await nav(page, "Catalog").click();
  await page.locator('section[data-category="Terminals"] [data-card="xterm"]').waitFor();
  await page.getByLabel("Search the catalog").fill("console");
  await page.locator('[data-card="xterm"]').waitFor();
  await page.getByLabel("Search the catalog").fill("");

  const id = await launchXterm(page);
  await nav(page, "My sessions").click();
  const row = page.locator(`tr[data-session="${id}"]`);
  const expectState = async (state) => {
    step(`the sessions page shows ${state}`);
    await page.locator(`tr[data-session="${id}"][data-state="${state}"]`).waitFor({ timeout: TIMEOUT });
  };
  await expectState("running");
  await row.getByRole("button", { name: "Hibernate" }).click();
  await expectState("hibernated");
  await row.getByRole("button", { name: "Wake" }).click();
  await expectState("running");

  await row.getByRole("button", { name: "Hibernate" }).click();
  await expectState("hibernated");
  step("the viewer says a hibernated session is not running, and connects once woken");
  await page.goto(`${opts.url}/view/${id}`);
  await page.getByText("This session is hibernated. Wake it to connect.").waitFor();
  await page.getByRole("button", { name: "Wake session" }).click();
  await page.locator('[data-view-state="connected"]').waitFor({ timeout: TIMEOUT });

  step("the remote desktop follows the browser window");
  const canvas = page.locator("#screen canvas");
  // The session's display takes the viewer's size (not a small desktop in a large frame)...
  const fits = async () => {
    const screen = await page.locator("#screen").boundingBox();
    const fb = await canvas.evaluate((c) => ({ width: c.width, height: c.height }));
    return screen && Math.abs(fb.width - Math.floor(screen.width)) <= 2 && Math.abs(fb.height - Math.floor(screen.height)) <= 2;
  };
  const waitToFit = async (what) => {
    const deadline = Date.now() + TIMEOUT;
    while (!(await fits())) {
      if (Date.now() > deadline) {
        const fb = await canvas.evaluate((c) => `${c.width}x${c.height}`);
        const screen = await page.locator("#screen").boundingBox();
        fail(`${what}: the desktop is ${fb}, the viewer ${screen?.width}x${screen?.height}`);
      }
      await page.waitForTimeout(250);
    }
  };
  await waitToFit("after connecting");
  // ...and follows it when the window changes.
  await page.setViewportSize({ width: 1000, height: 700 });
  await waitToFit("after the window shrank");
  await page.setViewportSize({ width: 1280, height: 900 });
  await waitToFit("after the window grew");

  await nav(page, "My sessions").click();
  await expectState("running");
  await row.getByRole("button", { name: "Stop" }).click();
  step("a stopped session leaves the list, and shows as terminated with ended sessions");
  await row.waitFor({ state: "detached", timeout: TIMEOUT });
  await page.getByLabel("Show ended sessions").check();
  await expectState("terminated");

  step("the agents page shows the local agent online");
  await nav(page, "Agents").click();
  await page.locator('tr[data-agent="local"]').getByText("online").waitFor();
  step("the overview shows this moment, the agent's load and the minutes sampled so far");
  await nav(page, "Overview").click();
  await page.locator('[data-tile="running"] strong').waitFor();
  await page.locator('tr[data-agent="local"] meter').waitFor();
  await page.getByText("Sessions by state", { exact: false }).waitFor();
  // The first sample is written just after the first minute since `up` started ends; the
  // page asks again every 15 s.
  await page.locator("figure svg.chart g[data-at]").first().waitFor({ state: "attached", timeout: 120_000 });
  await page.getByLabel("Window").selectOption("24");
  await page.getByText("Commands per 8 minutes", { exact: false }).waitFor();
  step("the commands page shows the session's commands");
  await nav(page, "Commands").click();
  for (const action of ["start_session", "hibernate_session", "wake_session", "stop_session"]) {
    await page.getByRole("cell", { name: action, exact: true }).first().waitFor();
  }
}

/** Polls until `file` holds `marker`, calling `nudge` (if given) between looks. */
async function waitForFile(file, marker, nudge = async () => {}) {
  step(`wait for ${file}`);
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    const text = await readFile(file, "utf8").catch(() => "");
    if (text.trim() === marker) return;
    if (Date.now() > deadline) fail(`${file} never held the marker (last: ${JSON.stringify(text)})`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await nudge();
  }
}

async function keystrokes(page) {
  const marker = opts.marker;
  const file = opts["marker-file"];
  if (!marker || !file) fail("keystrokes needs --marker and --marker-file");
  // As a user who allowed the site to use the clipboard.
  await page.context().grantPermissions(["clipboard-read", "clipboard-write"], { origin: new URL(opts.url).origin });
  await signIn(page);
  const id = await launchXterm(page);
  step("wait for the viewer to connect");
  await page.locator('[data-view-state="connected"]').waitFor({ timeout: TIMEOUT });
  const canvas = page.locator("#screen canvas");
  await canvas.waitFor();
  // Without a window manager, X focus follows the pointer: click inside xterm (top left).
  const box = await canvas.boundingBox();
  if (!box) fail("the noVNC canvas has no box");
  await page.mouse.click(box.x + Math.min(40, box.width / 4), box.y + Math.min(40, box.height / 4));
  step(`type the command into xterm through noVNC`);
  await page.keyboard.type(`echo ${marker} > ${file}`, { delay: 20 });
  await page.keyboard.press("Enter");
  await waitForFile(file, marker);
  await page.screenshot({ path: opts.screenshot, fullPage: true });

  // The remote screen's pixels to the page's: xterm's first line is at the top left.
  const framebuffer = () => canvas.evaluate((c) => ({ width: c.width, height: c.height }));
  let fb = await framebuffer();
  // Measured afresh for every use: filling the clipboard box scrolls the page, a box kept from
  // before puts the pointer on another line of xterm (or outside it), and the desktop follows
  // the viewer's size.
  const at = async (x, y) => {
    await canvas.scrollIntoViewIfNeeded();
    fb = await framebuffer();
    const b = await canvas.boundingBox();
    if (!b) fail("the noVNC canvas has no box");
    return [b.x + (x * b.width) / fb.width, b.y + (y * b.height) / fb.height];
  };
  step("text sent from the clipboard box pastes into the session");
  const pasted = `${file}.pasted`;
  // xterm pastes the selection on a middle click once the text has come back from the browser,
  // and bash's bracketed paste then waits for Enter, which may overtake the text. So offer,
  // paste and press Enter again until the command has run (running it twice is harmless).
  const paste = async () => {
    await page.getByLabel(/^Clipboard/).fill(`echo ${marker} > ${pasted}`);
    await page.getByRole("button", { name: "Send to session" }).click();
    await page.mouse.click(...(await at(40, 40)), { button: "middle" });
    await page.keyboard.press("Enter");
  };
  await paste();
  await waitForFile(pasted, marker, paste);

  // After the paste, so that xterm's own selection can never be what a middle click pastes.
  // A drag rather than a triple click, which xterm only takes as one within its multi-click time.
  step("text selected in the session reaches the clipboard box");
  // The paste above may have pressed Enter many times under load, scrolling the marker off the
  // top: clear the screen and type the line to select (not run) at the top of it.
  // The line wraps, so the first line holds only the start of the marker.
  const selected = (m) => document.getElementById("clipboard")?.value.includes(`echo ${m}`);
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    // Every attempt gives the canvas the keyboard first (the paste above leaves it on the page's
    // buttons when its middle click is slow, and Enter there would send the box again), then
    // clears the line and the screen and types the line again.
    await page.mouse.click(...(await at(40, 40)));
    await page.keyboard.press("Control+U");
    await page.keyboard.type("clear", { delay: 20 });
    await page.keyboard.press("Enter");
    await page.keyboard.type(`echo ${marker}`, { delay: 20 });
    await page.getByLabel(/^Clipboard/).fill("");
    await page.mouse.move(...(await at(2, 6)));
    await page.mouse.down();
    await page.mouse.move(...(await at(fb.width - 2, 6)), { steps: 10 });
    await page.mouse.up();
    // A drag that xterm saw before the typed line was drawn selects something else: drag again.
    const arrived = await page
      .waitForFunction(selected, marker.slice(0, 20), { timeout: 10_000 })
      .then(() => true, () => false);
    if (arrived) break;
    if (Date.now() > deadline) {
      const got = await page.getByLabel(/^Clipboard/).inputValue();
      fail(`the selected line never reached the clipboard box (last: ${JSON.stringify(got)})`);
    }
  }
  // Leave the shell an empty line.
  await page.keyboard.press("Control+U");

  step("what the session copies is on the browser's clipboard too");
  const onClipboard = async (text) => {
    const deadline = Date.now() + TIMEOUT;
    for (;;) {
      const got = await page.evaluate(() => navigator.clipboard.readText()).catch(() => "");
      if (got.includes(text)) return;
      if (Date.now() > deadline) fail(`the browser's clipboard never held ${JSON.stringify(text)} (last: ${JSON.stringify(got)})`);
      await page.waitForTimeout(250);
    }
  };
  await onClipboard(`echo ${marker.slice(0, 20)}`);
  step("the paste button takes the browser's clipboard");
  const fromClipboard = `from the clipboard ${marker}`;
  await page.evaluate((t) => navigator.clipboard.writeText(t), fromClipboard);
  await page.getByRole("button", { name: "Paste from your clipboard" }).click();
  await page.waitForFunction((t) => document.getElementById("clipboard")?.value === t, fromClipboard);

  step("stopping the session ends the viewer with a clear message");
  const stopped = await fetch(`${opts.url}/api/v1/sessions/${id}`, {
    method: "DELETE",
    headers: { Authorization: `Bearer ${opts.token}` },
  });
  if (!stopped.ok) fail(`stopping the session: ${stopped.status} ${await stopped.text()}`);
  await page.getByText("This session has ended.").waitFor({ timeout: TIMEOUT });
}

/** Fails unless `locator` matches nothing. */
async function expectAbsent(locator, what) {
  const count = await locator.count();
  if (count !== 0) fail(`${what} (found ${count})`);
}

async function users(page, browser) {
  const newUser = opts["new-user"];
  const newPassword = opts["new-password"];
  const other = opts["other-session"];
  if (!newUser || !newPassword || !other) fail("users needs --new-user, --new-password and --other-session");
  await signIn(page);
  step("the admin sees the admin pages");
  for (const name of ["Agents", "Users", "Groups"]) await nav(page, name).waitFor();
  step(`the admin creates ${newUser} on the Users page`);
  await nav(page, "Users").click();
  await page.getByRole("heading", { name: "Users" }).waitFor();
  await page.getByLabel("Username").fill(newUser);
  await page.getByLabel("Password").fill(newPassword);
  await page.getByLabel("Role").selectOption("user");
  await page.getByRole("button", { name: "Create user" }).click();
  await page.locator(`tr[data-user="${newUser}"]`).getByRole("cell", { name: "user", exact: true }).waitFor();
  step(`the admin puts ${newUser} in a group on the Groups page`);
  await nav(page, "Groups").click();
  await page.getByLabel("Name", { exact: true }).fill("staff");
  await page.getByRole("button", { name: "Create group" }).click();
  await page.getByLabel("Username to add to staff").fill(newUser);
  await page.locator('tr[data-group="staff"]').getByRole("button", { name: "Add" }).click();
  await page.getByRole("button", { name: `Remove ${newUser} from staff` }).waitFor();

  step(`${newUser} signs in in a fresh browser context`);
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const userPage = await context.newPage();
  userPage.setDefaultTimeout(TIMEOUT);
  userPage.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  try {
    await asUser(userPage, newUser, newPassword, other);
  } catch (e) {
    await userPage.screenshot({ path: opts.screenshot.replace(/\.png$/, "-user.png"), fullPage: true }).catch(() => {});
    throw e;
  } finally {
    await context.close();
  }
}

async function asUser(page, username, password, other) {
  await signIn(page, username, password);
  await page.locator('#signed-in-as[data-role="user"]').waitFor();
  step("the user sees the catalog");
  await nav(page, "Catalog").click();
  await page.locator('button[data-template="xterm"]').waitFor();
  step("the user has no links to the admin and operator pages");
  for (const name of ["Overview", "Agents", "Users", "Groups", "Audit"]) {
    await expectAbsent(nav(page, name), `the user sees a link to ${name}`);
  }
  step("the audit page, linked from the profile, shows the user only their own entries");
  await page.getByRole("link", { name: "Profile" }).click();
  await page.getByRole("link", { name: "Your activity" }).click();
  await page.locator('#audit tr[data-action="auth.login"]').first().waitFor();
  const actors = await page.locator("#audit tbody tr td:nth-child(2)").allTextContents();
  if (actors.some((a) => a !== `user:${username}`)) fail(`the user sees others' audit entries: ${actors}`);
  for (const [path, title] of [["/users", "Users"], ["/groups", "Groups"], ["/agents", "Agents"], ["/overview", "Overview"]]) {
    step(`${path} is not available to the user`);
    await page.goto(`${opts.url}${path}`);
    await page.getByRole("heading", { name: title }).waitFor();
    await page.getByText("This page is not available to you").waitFor();
    await expectAbsent(page.locator("table"), `${path} shows a table to a user`);
  }
  const id = await launchXterm(page);
  step("My sessions shows the user's session and not the admin's");
  await nav(page, "My sessions").click();
  await page.locator(`tr[data-session="${id}"][data-state="running"]`).waitFor({ timeout: TIMEOUT });
  await page.getByLabel("Show ended sessions").check();
  await expectAbsent(page.locator(`tr[data-session="${other}"]`), "the user sees the admin's session");
  await expectAbsent(page.getByLabel("Show everyone's sessions"), "the user may show everyone's sessions");

  step("the user creates an API token, sees its secret once, and revokes it");
  await page.getByRole("link", { name: "API tokens" }).click();
  await page.getByLabel("Name", { exact: true }).fill("laptop");
  await page.getByRole("button", { name: "Create token" }).click();
  const secret = (await page.locator("[data-secret]").textContent())?.trim() ?? "";
  if (secret.length < 16) fail(`the new token's secret is not shown (got ${JSON.stringify(secret)})`);
  const me = await fetch(`${opts.url}/api/v1/auth/me`, { headers: { Authorization: `Bearer ${secret}` } });
  const body = await me.json().catch(() => ({}));
  if (!me.ok || body?.user?.username !== username) fail(`the new token does not act as ${username}: ${me.status}`);
  page.once("dialog", (dialog) => void dialog.accept());
  await page.getByRole("button", { name: "Revoke laptop" }).click();
  await page.getByRole("cell", { name: "No tokens." }).waitFor();

  step("the user signs out");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("Username").waitFor();
  await page.goto(`${opts.url}/sessions`);
  await page.getByLabel("Username").waitFor();
}

/** The RFC 6238 code (SHA-1, 6 digits, 30 s) of `secret` (base32) for the current step + `offset`. */
function totpCode(secret, offset) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of secret.replace(/=+$/, "")) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 30_000) + offset));
  const mac = createHmac("sha1", key).update(counter).digest();
  const at = mac[mac.length - 1] & 0x0f;
  return String((mac.readUInt32BE(at) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

/** The RGBA pixels of an image on the page, drawn on white as a camera would see the screen. */
async function pixels(image) {
  await image.waitFor();
  const { width, height, data } = await image.evaluate(async (img) => {
    await img.decode();
    const canvas = document.createElement("canvas");
    canvas.width = img.width;
    canvas.height = img.height;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    return { width: canvas.width, height: canvas.height, data: Array.from(ctx.getImageData(0, 0, canvas.width, canvas.height).data) };
  });
  return { width, height, data: Uint8ClampedArray.from(data) };
}

async function totp(page) {
  await signIn(page);
  step("turn on two-step sign-in from the user menu");
  await page.getByRole("link", { name: "Two-step sign-in" }).click();
  await page.getByRole("button", { name: "Turn on" }).click();
  const secret = (await page.locator("#totp-secret").textContent())?.trim() ?? "";
  if (secret.length < 16) fail(`no secret shown (got ${JSON.stringify(secret)})`);
  const uri = await page.locator("#totp-uri").getAttribute("href");
  if (!uri?.startsWith("otpauth://totp/")) fail(`no otpauth link (got ${uri})`);
  step("the QR code shown, as the browser drew it, reads back as the otpauth link");
  const scanned = decodeQR(await pixels(page.locator("#totp-qr")), { format: "RGBA" });
  if (scanned !== uri) fail(`the QR code reads ${JSON.stringify(scanned)}, not the link ${uri}`);
  await page.screenshot({ path: opts.screenshot.replace(/\.png$/, "-qr.png"), fullPage: true });
  await page.getByLabel("Code from the app").fill(totpCode(secret, -1));
  await page.getByRole("button", { name: "Turn on" }).click();
  await page.locator("#recovery-codes li").nth(9).waitFor();
  step("sign out, and sign in again with the password and then a code");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("Username").fill(opts.username);
  await page.getByLabel("Password").fill(opts.password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("Enter the code from your authenticator app.").waitFor();
  await page.getByLabel("One-time code (or a recovery code)").fill(totpCode(secret, 0));
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator(`#signed-in-as[data-username="${opts.username}"]`).waitFor();
  step("turn it off with the password");
  await page.getByRole("link", { name: "Two-step sign-in" }).click();
  await page.getByLabel("Your password").fill(opts.password);
  await page.getByRole("button", { name: "Turn off" }).click();
  await page.getByRole("button", { name: "Turn on" }).waitFor();
}

/** Waits until the cell of `row` in the table `table` for `dimension` reads `text`. */
async function expectUse(page, table, dimension, text) {
  step(`${table} shows ${dimension}: ${text}`);
  await page.locator(`#${table} tr[data-dimension="${dimension}"] td`).getByText(text, { exact: true }).waitFor();
}

async function quotas(page, browser) {
  const member = opts["new-user"];
  const password = opts["new-password"];
  const group = opts.group;
  if (!member || !password || !group) fail("quotas needs --new-user, --new-password and --group");
  await signIn(page);
  step(`the admin sets a quota of one session and 3072 MiB on the group ${group}`);
  await nav(page, "Groups").click();
  await page.getByRole("button", { name: `Quota of group ${group}` }).click();
  await page.getByRole("heading", { name: `Quota of group ${group}` }).waitFor();
  await page.getByLabel("Max sessions").fill("1");
  await page.getByLabel("Max memory (MiB)").fill("3072");
  await page.getByRole("button", { name: "Save quota" }).click();
  await page.locator(`td[data-quota="${group}"]`).getByText("1 session · 3072 MiB", { exact: true }).waitFor();

  step(`the admin sets and then clears the session rules of the group ${group}`);
  await page.getByRole("button", { name: `Rules of group ${group}` }).click();
  await page.getByRole("heading", { name: `Session rules of group ${group}` }).waitFor();
  await page.getByLabel("File transfer", { exact: true }).selectOption("download");
  await page.getByRole("button", { name: "Save rules" }).click();
  await page.locator(`td[data-rules="${group}"]`).getByText("files: download only", { exact: true }).waitFor();
  await page.getByLabel("File transfer", { exact: true }).selectOption("");
  await page.getByRole("button", { name: "Save rules" }).click();
  await page.locator(`td[data-rules="${group}"]`).getByText("—", { exact: true }).waitFor();

  step(`the Users page shows the group's limit applying to ${member}`);
  await nav(page, "Users").click();
  await page.getByRole("button", { name: `Quota ${member}` }).click();
  await page.getByRole("heading", { name: `Quota of ${member}` }).waitFor();
  await expectUse(page, "user-quota-use", "max_sessions", "0 of 1");
  step(`the admin sets a memory limit on ${member}, then clears it`);
  await page.getByLabel("Max memory (MiB)").fill("4096");
  await page.getByRole("button", { name: "Save quota" }).click();
  await page.getByText(`Saved the quota of ${member}.`).waitFor();
  await expectUse(page, "user-quota-use", "max_memory_mib", "0 of 4096 MiB");
  await page.getByRole("button", { name: `Clear the quota of ${member}` }).click();
  await expectUse(page, "user-quota-use", "max_memory_mib", "0 of 3072 MiB");
  const left = await page.getByLabel("Max memory (MiB)").inputValue();
  if (left !== "") fail(`the cleared limit still shows ${JSON.stringify(left)}`);

  step(`${member} signs in in a fresh browser context`);
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const memberPage = await context.newPage();
  memberPage.setDefaultTimeout(TIMEOUT);
  memberPage.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  try {
    await quotaAsMember(memberPage, member, password);
  } catch (e) {
    await memberPage.screenshot({ path: opts.screenshot.replace(/\.png$/, "-member.png"), fullPage: true }).catch(() => {});
    throw e;
  } finally {
    await context.close();
  }
}

async function quotaAsMember(page, member, password) {
  await signIn(page, member, password);
  step("the profile shows the member's quota");
  await page.getByRole("link", { name: "Profile" }).click();
  await expectUse(page, "quota", "max_sessions", "0 of 1");
  await expectUse(page, "quota", "max_memory_mib", "0 of 3072 MiB");
  step("the catalog shows the quota and no warning yet");
  await nav(page, "Catalog").click();
  await page.locator("#quota-summary").getByText("Sessions 0 of 1", { exact: false }).waitFor();
  await page.locator('button[data-template="xterm"]').waitFor();
  await expectAbsent(page.locator("[data-quota-warning]"), "a warning shows before any session");
  await launchXterm(page);
  step("back on the catalog, launching again is marked as over the quota");
  await nav(page, "Catalog").click();
  await page.locator("#quota-summary").getByText("Sessions 1 of 1", { exact: false }).waitFor();
  // xterm sets no resources: it counts with the server's default size (2048 MiB), as the server counts it.
  const warning = page.locator('[data-quota-warning="xterm"]');
  await warning.getByText("Launching this would exceed your quota: 1 of 1 sessions in use").waitFor();
  const warned = (await warning.textContent()) ?? "";
  if (!warned.includes("2048 of 3072 MiB of memory in use, and this needs 2048 more")) {
    fail(`the warning does not count memory with the default size: ${warned}`);
  }
  step("a launch beyond the quota is refused with a clear message");
  await page.locator('button[data-template="xterm"]').click();
  const refusal = page.getByRole("alert");
  await refusal.getByText("Launch refused: your quota does not allow another session").waitFor();
  const text = (await refusal.textContent()) ?? "";
  if (!text.includes("max_sessions is 1")) fail(`the refusal does not name the limit: ${text}`);
  await expectAbsent(page.locator('[data-view-state]'), "a viewer opened for the refused launch");
  await page.screenshot({ path: opts.screenshot.replace(/\.png$/, "-member.png"), fullPage: true });
}

/** Waits until the audit table has rows, all of `action`. */
async function onlyAction(page, action) {
  step(`the audit table shows only ${action}`);
  await page.waitForFunction((action) => {
    const rows = [...document.querySelectorAll("#audit tbody tr")];
    return rows.length > 0 && rows.every((tr) => tr.dataset.action === action);
  }, action);
}

async function audit(page) {
  const group = opts.group;
  if (!group) fail("audit needs --group");
  await signIn(page);
  step(`the admin creates the group ${group}`);
  await nav(page, "Groups").click();
  await page.getByLabel("Name", { exact: true }).fill(group);
  await page.getByRole("button", { name: "Create group" }).click();
  await page.locator(`tr[data-group="${group}"]`).waitFor();

  step("the audit page shows the admin's sign-in and the new group");
  await nav(page, "Audit").click();
  await page.getByRole("heading", { name: "Audit log" }).waitFor();
  const rows = page.locator("#audit tbody tr");
  const login = page.locator('#audit tr[data-action="auth.login"]').first();
  await login.getByRole("cell", { name: `user:${opts.username}`, exact: true }).waitFor();
  const created = page.locator('#audit tr[data-action="group.create"]').first();
  await created.getByRole("cell", { name: group, exact: true }).waitFor();
  await created.getByRole("cell", { name: `user:${opts.username}`, exact: true }).waitFor();
  const address = (await created.locator("td").nth(4).textContent())?.trim();
  if (address !== "127.0.0.1") fail(`the client address is ${JSON.stringify(address)}, not 127.0.0.1`);

  step("filtering by action shows only that action, newest first");
  await page.getByLabel("Action").fill("group.create");
  await page.getByRole("button", { name: "Filter" }).click();
  await onlyAction(page, "group.create");
  await rows.first().getByRole("cell", { name: group, exact: true }).waitFor();
  const actions = async () => rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.action));
  const first = await actions();
  if (first.length !== 50) fail(`the first page of group.create has ${first.length} rows, not 50`);
  step("Older shows the next page, Newer the first again");
  const firstId = await rows.first().getAttribute("data-audit");
  await page.getByRole("button", { name: "Older" }).click();
  await page.locator('[data-page="2"]').waitFor();
  await onlyAction(page, "group.create");
  const secondIds = await rows.evaluateAll((trs) => trs.map((tr) => Number(tr.dataset.audit)));
  if (secondIds.some((id) => id >= Number(firstId))) fail(`the second page is not older: ${secondIds}`);
  if (!(await page.getByRole("button", { name: "Older" }).isDisabled())) fail("Older is enabled on the last page");
  await page.getByRole("button", { name: "Newer" }).click();
  await page.locator('[data-page="1"]').waitFor();
  await page.locator(`#audit tr[data-audit="${firstId}"]`).waitFor();

  step("filtering by actor and action finds the admin's sign-in");
  await page.getByLabel("Actor (username)").fill(opts.username);
  await page.getByLabel("Action").fill("auth.login");
  await page.getByRole("button", { name: "Filter" }).click();
  await onlyAction(page, "auth.login");
  const actors = await rows.evaluateAll((trs) => trs.map((tr) => tr.cells[1].textContent));
  if (actors.some((a) => a !== `user:${opts.username}`)) fail(`the actor filter shows ${actors}`);
  step("an actor with no entries shows none");
  await page.getByLabel("Actor (username)").fill("nobody-here");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.getByRole("cell", { name: "No entries." }).waitFor();
}

async function sso(page) {
  step("a refused callback comes back to the sign-in page, which says so");
  await page.goto(`${opts.url}/api/v1/auth/oidc/${opts["provider-id"]}/callback?state=made-up&code=x`);
  await page.locator('[data-sso-error="oidc_invalid_state"]').waitFor();
  step("open the UI: the sign-in page offers the provider");
  await page.goto(opts.url);
  const button = page.locator(`#sso-${opts["provider-id"]}`);
  await button.waitFor();
  step("the provider's own login page");
  await button.click();
  await page.locator('input[name="login"]').waitFor();
  await page.locator('input[name="login"]').fill(opts.username);
  await page.locator('input[name="password"]').fill(opts.password);
  await page.locator('button[type="submit"]').click();
  step(`back, signed in as ${opts["expect-username"]}`);
  await page.locator(`#signed-in-as[data-username="${opts["expect-username"]}"]`).waitFor({ timeout: TIMEOUT });
  await page.getByRole("heading", { name: "My sessions" }).waitFor();
  const id = await launchXterm(page);
  step("the viewer connects and shows the desktop");
  await page.locator('[data-view-state="connected"]').waitFor({ timeout: TIMEOUT });
  const canvas = page.locator("#screen canvas");
  await canvas.waitFor({ state: "visible" });
  // noVNC sizes its canvas to the remote framebuffer once the session's server has sent it.
  const fb = await canvas.evaluate((c) => ({ width: c.width, height: c.height }));
  if (fb.width < 100 || fb.height < 100) throw new Error(`no desktop drawn for ${id}: ${JSON.stringify(fb)}`);
  step(`the desktop of ${id} is ${fb.width}x${fb.height}`);
}

/** How many pixels of the canvas differ from its most common colour (0: blank). */
async function drawn(canvas) {
  return canvas.evaluate((c) => {
    const { data } = c.getContext("2d").getImageData(0, 0, c.width, c.height);
    const counts = new Map();
    for (let i = 0; i < data.length; i += 4) {
      const key = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    const most = Math.max(0, ...counts.values());
    return data.length / 4 - most;
  });
}

async function waitForDrawing(page, canvas, what) {
  await canvas.waitFor();
  const deadline = Date.now() + TIMEOUT;
  while ((await drawn(canvas)) < 100) {
    if (Date.now() > deadline) fail(`${what}: the canvas stayed blank`);
    await page.waitForTimeout(200);
  }
}

async function recording(page) {
  await signIn(page);
  const id = await launchXterm(page);
  step("the viewer connects and says the viewing is recorded");
  await page.locator('[data-view-state="connected"]').waitFor({ timeout: TIMEOUT });
  await page.locator("#recording-badge").waitFor({ state: "visible" });
  const live = page.locator("#screen canvas");
  await waitForDrawing(page, live, "the live desktop");
  step("type into xterm for a while, so the recording has a timeline to seek in");
  const box = await live.boundingBox();
  if (!box) fail("the noVNC canvas has no box");
  await page.mouse.click(box.x + Math.min(40, box.width / 4), box.y + Math.min(40, box.height / 4));
  await page.keyboard.type("echo this viewing is recorded", { delay: 80 });
  await page.keyboard.press("Enter");
  step("leaving the viewer ends the recording; it is listed on the session's recordings page");
  await page.goto(`${opts.url}/sessions/${id}/recordings`);
  const play = page.locator('tr[data-recording] button[data-action="play"]').first();
  const deadline = Date.now() + TIMEOUT;
  while (!(await play.isEnabled().catch(() => false))) {
    if (Date.now() > deadline) fail("the recording never ended");
    await page.reload();
    await page.locator("tr[data-recording]").first().waitFor();
  }
  await play.click();
  await page.waitForURL(/\/recordings\/[0-9a-f-]{36}$/);
  step("playback draws the recorded desktop");
  const canvas = page.locator("#screen canvas");
  await page.locator('.playback[data-play-state="playing"], .playback[data-play-state="ended"]').waitFor();
  await waitForDrawing(page, canvas, "the playback");
  step("pause holds the position");
  if ((await page.locator(".playback").getAttribute("data-play-state")) === "playing") {
    await page.locator("#play").click();
  }
  await page.locator('.playback[data-play-state="paused"], .playback[data-play-state="ended"]').waitFor();
  const held = await page.locator(".playback").getAttribute("data-position");
  await page.locator("#speed").selectOption("4");
  if ((await page.locator(".playback").getAttribute("data-position")) !== held) fail("paused playback moved");
  step("seek back to the start replays from the beginning, then forward to the end draws the desktop again");
  const seekTo = (value) =>
    page.locator("#seek").evaluate((el, v) => {
      el.value = String(v);
      el.dispatchEvent(new Event("input"));
    }, value);
  const end = Number(await page.locator("#seek").getAttribute("max"));
  if (!(end > 1000)) fail(`the recording lasts ${end} ms, too short to seek in`);
  await seekTo(0);
  await page.locator('.playback[data-position="0"]').waitFor();
  const middle = Math.round(end / 2);
  await seekTo(middle);
  await page.locator(`.playback[data-position="${middle}"]`).waitFor();
  await seekTo(end);
  await page.locator(`.playback[data-position="${end}"]`).waitFor();
  await waitForDrawing(page, canvas, "the playback after seeking");
  console.log("playback draws the recorded desktop, pauses and seeks");
}

async function files(page) {
  const marker = opts.marker;
  if (!marker) fail("files needs --marker");
  await signIn(page);
  await launchXterm(page);
  const name = `dropped-${marker}.txt`;
  step("drop a file on the files panel");
  await page.locator("#files-drop").waitFor();
  const dataTransfer = await page.evaluateHandle(([name, text]) => {
    const dt = new DataTransfer();
    dt.items.add(new File([text], name, { type: "text/plain" }));
    return dt;
  }, [name, marker]);
  await page.dispatchEvent("#files-drop", "drop", { dataTransfer });
  const link = page.locator("#files-list a", { hasText: name });
  await link.waitFor({ timeout: TIMEOUT });
  step("the dropped file is listed");
  const [download] = await Promise.all([page.waitForEvent("download"), link.click()]);
  const body = await readFile(await download.path(), "utf8");
  if (body !== marker) fail(`the download holds ${JSON.stringify(body)}, not the marker`);
  step("the download holds what was dropped");
  await page.screenshot({ path: opts.screenshot, fullPage: true });
}

/** Client-to-server RFB messages that carry input (key, pointer, cut text, desktop size). */
const INPUT_MESSAGES = new Set([4, 5, 6, 251]);
/** The extended clipboard's capabilities action: noVNC's answer to the server's, not input. */
const CLIPBOARD_CAPS = 1 << 24;

/** Whether the message at `at` of `frame` is noVNC's extended clipboard capabilities answer. */
function clipboardCaps(frame, at) {
  if (frame[at] !== 6 || at + 12 > frame.length) return 0;
  const length = frame.readInt32BE(at + 4);
  if (length >= 0 || !(frame.readUInt32BE(at + 8) & CLIPBOARD_CAPS)) return 0;
  return 8 - length;
}

/** The input messages among the client-to-server frames `frames` (each a Buffer). */
function inputMessages(frames) {
  const found = [];
  for (const frame of frames) {
    // The handshake: the protocol version, then one-byte answers.
    if (frame.length === 12 && frame.toString("latin1").startsWith("RFB ")) continue;
    let at = 0;
    while (at < frame.length) {
      const type = frame[at];
      const caps = clipboardCaps(frame, at);
      if (caps > 0) {
        at += caps;
        continue;
      }
      if (INPUT_MESSAGES.has(type)) {
        found.push(`${type} (${frame.subarray(at, at + 24).toString("hex")})`);
        break;
      }
      // Walk over what a watcher may send; stop at anything else (one-byte handshake answers).
      const length =
        type === 0 ? 20 : type === 2 && at + 4 <= frame.length ? 4 + 4 * frame.readUInt16BE(at + 2) : type === 3 || type === 150 ? 10 : 0;
      if (length === 0) break;
      at += length;
    }
  }
  return found;
}

async function sharing(page, browser) {
  const watcher = opts["new-user"];
  const watcherPassword = opts["new-password"];
  if (!watcher || !watcherPassword) fail("sharing needs --new-user and --new-password");
  await page.context().grantPermissions(["clipboard-read", "clipboard-write"], { origin: new URL(opts.url).origin });
  await signIn(page);
  const id = await launchXterm(page);
  await page.locator('[data-view-state="connected"]').waitFor({ timeout: TIMEOUT });
  step("the owner makes a view-only link in the share dialog and copies it");
  await page.getByRole("button", { name: "Share…" }).click();
  const dialog = page.locator("#share-dialog");
  await dialog.waitFor({ state: "visible" });
  await dialog.getByLabel("Mode").selectOption("view_only");
  await dialog.getByLabel("Expires after").selectOption({ label: "1 hour" });
  await dialog.getByRole("button", { name: "Create link" }).click();
  const linkBox = dialog.locator("#share-link-url");
  await linkBox.waitFor({ state: "visible" });
  const link = await linkBox.inputValue();
  if (!/\/shared\/[0-9a-f-]{36}$/.test(link)) fail(`the dialog made ${JSON.stringify(link)}`);
  const shareId = link.split("/").pop();
  await dialog.locator(`tr[data-share="${shareId}"][data-state="active"]`).waitFor();
  await dialog.getByRole("button", { name: "Copy link" }).click();
  await dialog.getByText("Copied.").waitFor();
  const onClipboard = await page.evaluate(() => navigator.clipboard.readText());
  if (onClipboard !== link) fail(`the clipboard holds ${JSON.stringify(onClipboard)}, not the link`);

  step(`${watcher} opens the link in another browser, signs in and comes back to it`);
  const other = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const watching = await other.newPage();
  watching.setDefaultTimeout(TIMEOUT);
  watching.on("pageerror", (e) => console.error(`watcher page error: ${e.message}`));
  const sent = [];
  let closed = null;
  watching.on("websocket", (ws) => {
    if (!ws.url().includes("/vnc?")) return;
    ws.on("framesent", ({ payload }) => sent.push(Buffer.isBuffer(payload) ? payload : Buffer.from(payload, "latin1")));
    closed = new Promise((resolve) => ws.on("close", resolve));
  });
  await openShareLink(watching, link, watcher, watcherPassword);
  step("the watcher sees the desktop, marked view only");
  await watching.locator('[data-view-state="connected"]').waitFor({ timeout: TIMEOUT });
  await watching.locator("#share-mode").getByText("View only").waitFor({ state: "visible" });
  const canvas = watching.locator("#screen canvas");
  await waitForDrawing(watching, canvas, "the shared desktop");
  step("the view-only page has no clipboard tools and no files panel");
  await expectAbsent(watching.locator("#clipboard"), "a view-only watcher has the clipboard tools");
  await expectAbsent(watching.locator("#files-drop"), "a view-only watcher has the files panel");
  step("the watcher's clicks and keys are not sent");
  const box = await canvas.boundingBox();
  if (!box) fail("the shared canvas has no box");
  await watching.mouse.click(box.x + 40, box.y + 40);
  await watching.keyboard.type("echo not from a watcher", { delay: 10 });
  await watching.keyboard.press("Enter");
  await watching.screenshot({ path: opts.screenshot.replace(/\.png$/, "-watcher.png"), fullPage: true });

  step("the owner sees the watcher in the dialog and disconnects them");
  const row = dialog.locator(`#watchers tr[data-user="${watcher}"][data-mode="view_only"]`);
  await row.waitFor({ timeout: TIMEOUT });
  await page.screenshot({ path: opts.screenshot.replace(/\.png$/, "-dialog.png"), fullPage: true });
  await row.getByRole("button", { name: "Disconnect" }).click();
  await row.waitFor({ state: "detached", timeout: TIMEOUT });
  step("the watcher's page says why");
  await watching
    .locator('[data-view-state="disconnected"]')
    .getByText(`Disconnected: disconnected by ${opts.username}.`)
    .waitFor({ timeout: TIMEOUT });
  if (!closed) fail("the watcher's page opened no viewer WebSocket");
  await closed;
  const input = inputMessages(sent);
  if (sent.length === 0) fail("no frame from the watcher was seen");
  if (input.length > 0) fail(`the view-only page sent input messages of types ${input}`);
  step(`the watcher's page sent ${sent.length} frames, none of them input`);

  step("the owner revokes the link; connecting again is refused as revoked");
  await dialog.locator(`tr[data-share="${shareId}"]`).getByRole("button", { name: "Revoke" }).click();
  await dialog.locator(`tr[data-share="${shareId}"][data-state="revoked"]`).waitFor();
  await watching.getByRole("button", { name: "Connect again" }).click();
  await watching
    .locator('[data-view-state="refused"][data-reason="share_revoked"]')
    .getByText("This share link was revoked by the session's owner.")
    .waitFor();
  await dialog.getByRole("button", { name: "Close" }).click();

  step("a link for other people, and an expired one, are explained to the watcher");
  const makeShare = async (share) => {
    const made = await fetch(`${opts.url}/api/v1/sessions/${id}/shares`, {
      method: "POST",
      headers: { Authorization: `Bearer ${opts.token}`, "Content-Type": "application/json" },
      body: JSON.stringify(share),
    });
    if (!made.ok) fail(`making a share link: ${made.status} ${await made.text()}`);
    return made.json();
  };
  const forOthers = await makeShare({ mode: "control", users: [opts.username] });
  await watching.goto(`${opts.url}${forOthers.link}`);
  await watching
    .locator('[data-view-state="refused"][data-reason="forbidden"]')
    .getByText("This share link is for other people. Ask the session's owner to add you.")
    .waitFor();
  const brief = await makeShare({ mode: "view_only", expires_in_secs: 1 });
  await watching.goto(`${opts.url}${brief.link}`);
  // Opened within its second, the link connects and its stream is closed when it expires;
  // either way, connecting (again) is refused as expired.
  const expired = watching.locator('[data-view-state="refused"][data-reason="share_expired"]');
  const ended = watching.locator('[data-view-state="disconnected"]');
  await expired.or(ended).waitFor({ timeout: TIMEOUT });
  if (await ended.isVisible()) await watching.getByRole("button", { name: "Connect again" }).click();
  await expired.getByText("This share link has expired. Ask the session's owner for a new one.").waitFor();
  await other.close();

  step("the session list opens the same dialog, with the session's links");
  await nav(page, "My sessions").click();
  await page.locator(`tr[data-session="${id}"]`).getByRole("button", { name: "Share" }).click();
  const fromList = page.locator("#share-dialog");
  await fromList.locator(`tr[data-share="${shareId}"][data-state="revoked"]`).waitFor();
  await fromList.locator(`tr[data-share="${forOthers.id}"][data-state="active"]`).waitFor();
  await fromList.getByRole("button", { name: "Close" }).click();
  await fromList.waitFor({ state: "hidden" });
  console.log("a view-only link is watched, the watcher disconnected, the link revoked");
}

/** Opens the share `link` signed out: signs in as `username` on the way and comes back to it. */
async function openShareLink(page, link, username, password) {
  await page.goto(link);
  await page.locator("#signin-for-share").waitFor();
  await page.getByLabel("Username").waitFor();
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(`**/shared/${link.split("/").pop()}`);
}

/** The lines `file` holds (none while it does not exist). */
async function fileLines(file) {
  return (await readFile(file, "utf8").catch(() => "")).split("\n");
}

/**
 * Runs `attempt` until `done` says so, looking for up to 5 s after each; fails with `what`
 * after the scenario's timeout. For input into a remote desktop, whose first keys may race
 * the X focus following the pointer.
 */
async function untilDone(what, attempt, done) {
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    await attempt();
    const looked = Date.now() + 5000;
    while (Date.now() < looked) {
      if (await done()) return;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    if (Date.now() > deadline) fail(`${what}, tried for ${TIMEOUT / 1000} s`);
  }
}

async function control(page, browser) {
  const watcher = opts["new-user"];
  const watcherPassword = opts["new-password"];
  const { template, marker } = opts;
  const file = opts["marker-file"];
  if (!watcher || !watcherPassword || !template || !marker || !file) {
    fail("control needs --new-user, --new-password, --template, --marker and --marker-file");
  }
  await signIn(page);
  const id = await launch(page, template);
  await page.locator('[data-view-state="connected"]').waitFor({ timeout: TIMEOUT });
  step("the owner makes a control link in the share dialog");
  await page.getByRole("button", { name: "Share…" }).click();
  const dialog = page.locator("#share-dialog");
  await dialog.getByLabel("Mode").selectOption("control");
  await dialog.getByRole("button", { name: "Create link" }).click();
  const linkBox = dialog.locator("#share-link-url");
  await linkBox.waitFor({ state: "visible" });
  const link = await linkBox.inputValue();
  await dialog.getByRole("button", { name: "Close" }).click();
  // The owner leaves the viewer: one controlling viewer sizes the desktop, the watcher's.
  await nav(page, "My sessions").click();

  step(`${watcher} opens the link, signs in and comes back to it`);
  const other = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await other.grantPermissions(["clipboard-read", "clipboard-write"], { origin: new URL(opts.url).origin });
  const watching = await other.newPage();
  watching.setDefaultTimeout(TIMEOUT);
  watching.on("pageerror", (e) => console.error(`watcher page error: ${e.message}`));
  try {
    await openShareLink(watching, link, watcher, watcherPassword);
    await controlAsWatcher(watching, marker, file);
    step("the API refuses the watcher the session's files, as another user's session");
    const listing = await watching.evaluate(async (id) => (await fetch(`/api/v1/sessions/${id}/files`)).status, id);
    if (listing !== 404) fail(`listing the shared session's files answered ${listing} to the watcher, not 404`);
    step("the owner's dialog, from the session list, shows the watcher with control");
    await page.locator(`tr[data-session="${id}"]`).getByRole("button", { name: "Share" }).click();
    await page.locator(`#share-dialog #watchers tr[data-user="${watcher}"][data-mode="control"]`).waitFor({ timeout: TIMEOUT });
    await page.screenshot({ path: opts.screenshot.replace(/\.png$/, "-dialog.png"), fullPage: true });
    await page.locator("#share-dialog").getByRole("button", { name: "Close" }).click();
  } catch (e) {
    await watching.screenshot({ path: opts.screenshot.replace(/\.png$/, "-watcher.png"), fullPage: true }).catch(() => {});
    throw e;
  }
  await watching.screenshot({ path: opts.screenshot.replace(/\.png$/, "-watcher.png"), fullPage: true });
  await other.close();
  console.log("a control link's watcher pastes into the session and sees what it copies");
}

/** The watcher's side of `control`, on the shared page `page`. */
async function controlAsWatcher(page, marker, file) {
  step("the watcher sees the desktop with control, the clipboard tools and no files panel");
  await page.locator('[data-view-state="connected"]').waitFor({ timeout: TIMEOUT });
  await page.locator("#share-mode").getByText("Control").waitFor({ state: "visible" });
  const box = page.getByLabel(/^Clipboard/);
  await box.waitFor({ state: "visible" });
  await page.getByRole("button", { name: "Send to session" }).waitFor({ state: "visible" });
  await expectAbsent(page.locator("#files-drop"), "a watcher through a link has the files panel");
  const canvas = page.locator("#screen canvas");
  await waitForDrawing(page, canvas, "the shared desktop");
  // The probe's xterm is at the desktop's top left; measured afresh for every use (the desktop
  // follows the watcher's viewer, and filling the box may scroll the page).
  const xterm = async () => {
    await canvas.scrollIntoViewIfNeeded();
    const fb = await canvas.evaluate((c) => ({ width: c.width, height: c.height }));
    const b = await canvas.boundingBox();
    if (!b) fail("the noVNC canvas has no box");
    return [b.x + (40 * b.width) / fb.width, b.y + (40 * b.height) / fb.height];
  };
  const typeLine = async (text) => {
    await page.mouse.click(...(await xterm()));
    await page.keyboard.type(text, { delay: 20 });
    await page.keyboard.press("Enter");
  };
  const hasLine = (line) => async () => (await fileLines(file)).includes(line);

  step("the watcher's typing reaches the session");
  await untilDone("the probe never took the watcher's typing", () => typeLine("ready"), hasLine("ready"));

  step("text sent from the watcher's clipboard box is the session's clipboard");
  await untilDone(
    `the session's clipboard never held ${marker}`,
    async () => {
      await box.fill(marker);
      await page.getByRole("button", { name: "Send to session" }).click();
      await typeLine("paste");
    },
    hasLine(`pasted:${marker}`),
  );

  step("what the session copies appears in the watcher's clipboard box");
  const copied = `from the session ${marker}`;
  await untilDone(
    "what the session copied never reached the watcher's clipboard box",
    async () => {
      await box.fill("");
      await typeLine(`copy ${copied}`);
    },
    async () => (await box.inputValue()) === copied,
  );
}

async function homes(page) {
  const keep = opts["keep-user"];
  const remove = opts["delete-user"];
  if (!keep || !remove) fail("homes needs --keep-user and --delete-user");
  await signIn(page);
  await nav(page, "Users").click();
  await page.getByRole("heading", { name: "Users" }).waitFor();
  const question = page.locator("#home-dialog");
  /** Deletes `username`: accepts the browser's confirmation, then answers the home question. */
  const deleteAnswering = async (username, answer) => {
    step(`delete ${username}, answering "${answer}" about their home`);
    page.once("dialog", (confirmation) => {
      if (!confirmation.message().startsWith(`Delete ${username}?`)) {
        console.error(`unexpected confirmation: ${confirmation.message()}`);
      }
      void confirmation.accept();
    });
    await page.getByRole("button", { name: `Delete ${username}` }).click();
    await question.waitFor({ state: "visible" });
    await question.getByRole("heading", { name: `${username} has a home directory` }).waitFor();
    await page.screenshot({ path: opts.screenshot.replace(/\.png$/, `-${username}.png`) });
    await question.getByRole("button", { name: answer, exact: true }).click();
    await question.waitFor({ state: "hidden" });
  };
  const row = (username) => page.locator(`tr[data-user="${username}"]`);

  await deleteAnswering(keep, "Keep the home");
  await page.getByText(`Deleted ${keep}; their home stays on its agent.`).waitFor();
  await row(keep).waitFor({ state: "detached" });

  await deleteAnswering(remove, "Cancel");
  await page.getByText(`${remove} was not deleted.`).waitFor();
  await page.reload();
  await row(remove).waitFor();
  step(`${remove} is still there after Cancel`);

  await deleteAnswering(remove, "Delete the home");
  await page.getByText(`Deleted ${remove}; their agent removes their home.`).waitFor();
  await row(remove).waitFor({ state: "detached" });
  console.log("deleting a user with a home keeps it, deletes it, or cancels, as asked");
}

const scenarios = { lifecycle, keystrokes, users, totp, quotas, audit, sso, recording, files, sharing, control, homes };
const scenario = scenarios[opts.scenario];
if (!scenario) fail(`unknown scenario ${opts.scenario}`);

let browser;
try {
  browser = await chromium.launch({
    executablePath: opts.chromium,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
} catch (e) {
  fail(`cannot start Chromium at ${opts.chromium}: ${e.message}`);
}
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
page.setDefaultTimeout(TIMEOUT);
page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
let failure = null;
try {
  await scenario(page, browser);
} catch (e) {
  failure = e;
}
// Keystrokes keeps the screenshot it took of the typed command; others take theirs at the end.
if (failure || opts.scenario !== "keystrokes") {
  await page.screenshot({ path: opts.screenshot, fullPage: true }).catch((e) => {
    console.error(`screenshot failed: ${e.message}`);
  });
}
await browser.close();
if (failure) fail(`${opts.scenario}: ${failure.stack ?? failure}`);
console.log(`ok: ${opts.scenario}`);
