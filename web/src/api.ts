// The REST API under /api/v1: types (generated into api.gen.ts from the server's OpenAPI document,
// web/openapi.json, by `npm run api`; never written by hand) and one fetch wrapper that turns `{"error":{"code","message"}}` bodies into ApiError. The browser
// session is the HttpOnly cookie `POST /auth/login` sets: the page never sees a secret, it only
// sends the cookie along (same origin), and a 401 means "sign in again".

import type { components, operations } from "./api.gen";

type Schemas = components["schemas"];

export type SessionState = Schemas["SessionState"];
export type Session = Schemas["Session"];
export type Template = Schemas["Template"];
export type CreateTemplate = Schemas["CreateTemplate"];
export type UpdateTemplate = Schemas["UpdateTemplate"];
export type TemplateIcon = Schemas["TemplateIcon"];
export type HomePolicy = Schemas["HomePolicy"];
export type SessionRules = Schemas["SessionRules"];
export type EffectiveRules = Schemas["EffectiveRules"];
export type ClipboardPolicy = Schemas["ClipboardPolicy"];
export type TransferPolicy = Schemas["TransferPolicy"];
export type RecordingPolicy = Schemas["RecordingPolicy"];
export type Agent = Schemas["Agent"];
export type Overview = Schemas["Overview"];
export type Command = Schemas["Command"];
/** Answer to POST /api/v1/sessions/{id}/connect. */
export type ConnectTicket = Schemas["ConnectInfo"];
export type Recording = Schemas["Recording"];
/** A share link of a session; `link` is the web UI's page for it (`/shared/{id}`). */
export type Share = Schemas["Share"];
export type CreateShare = Schemas["CreateShare"];
export type ShareMode = Schemas["ShareMode"];
/** Someone watching a session right now, on whichever replica carries their stream. */
export type Viewer = Schemas["Viewer"];
/** What a user may do; ordered by power. */
export type Role = Schemas["Role"];
export type User = Schemas["User"];
export type CreateUser = Schemas["CreateUser"];
export type UpdateUser = Schemas["UpdateUser"];
export type Group = Schemas["Group"];
export type ApiToken = Schemas["ApiToken"];
/** Answer to POST /api/v1/tokens: the secret is in it this once. */
export type CreatedToken = Schemas["CreatedToken"];
/** Limits at one level (user, group, or what applies); `null` (or absent): none at that level. */
export type QuotaLimits = Schemas["QuotaLimits"];
export type QuotaDimension = keyof QuotaLimits;
export type QuotaUsage = Schemas["QuotaUsage"];
export type SessionSize = Schemas["SessionSize"];
/** Answer to GET /api/v1/auth/me. */
export type Me = Schemas["Me"];
export type UserQuota = Schemas["UserQuota"];
export type GroupQuota = Schemas["GroupQuota"];
/** PUT …/quota: an omitted field stays as it is, `null` clears it (the level inherits). */
export type SetQuota = Schemas["SetQuota"];
export type AuditRecord = Schemas["AuditRecord"];
/** GET /api/v1/audit's query; every field narrows the answer. */
export type AuditFilter = NonNullable<operations["audit_list"]["parameters"]["query"]>;
export type LoginResponse = Schemas["LoginResponse"];
export type TotpEnrolment = Schemas["TotpEnrolment"];
export type RecoveryCodes = Schemas["RecoveryCodes"];
/** A single sign-on provider, one button on the sign-in page. */
export type SignInProvider = Schemas["SignInProvider"];
/** GET /api/v1/sessions/{id}/files: the session's transfer folder. */
export type FileListing = Schemas["FileListing"];
export type FileEntry = Schemas["FileEntry"];

/**
 * A page of a listing; `next_cursor` is absent on the last page. Generic here, where the
 * document has one `Page_<Item>` schema per listing, all of this shape.
 */
export interface Page<T> {
  items: T[];
  next_cursor?: Schemas["Page_Session"]["next_cursor"];
}

export function isTerminal(state: SessionState): boolean {
  return state === "terminated" || state === "failed";
}

/** An error the API answered (or the network failed with: status 0, code `network`). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

const POWER: Record<Role, number> = { user: 0, operator: 1, admin: 2 };

/** Whether `role` has at least the power of `needed`. */
export function atLeast(role: Role, needed: Role): boolean {
  return POWER[role] >= POWER[needed];
}


/** Called when the API answers 401: the browser session has ended (or never began). */
let onUnauthorized: () => void = () => {};

export function setUnauthorizedHandler(handler: () => void): void {
  onUnauthorized = handler;
}

/** Calls the API with the session cookie; `quiet` keeps a 401 from ending the page's session. */
async function request<T>(method: string, path: string, body?: unknown, quiet = false): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(`/api/v1${path}`, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, "network", `cannot reach the server (${String(e)})`);
  }
  const text = await response.text();
  let json: unknown = undefined;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
  }
  if (!response.ok) {
    const detail = (json as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
    const code = typeof detail?.code === "string" ? detail.code : `http_${response.status}`;
    const message =
      typeof detail?.message === "string" ? detail.message : `${response.status} ${response.statusText}`;
    if (response.status === 401 && !quiet) onUnauthorized();
    throw new ApiError(response.status, code, message);
  }
  return json as T;
}

const enc = encodeURIComponent;

/** Most items a listing is followed to, so a runaway list cannot hang the page. */
const MAX_LISTED = 10_000;

/** Every item of a listing, following its pages (1000 at a time). */
async function all<T>(path: string): Promise<T[]> {
  const items: T[] = [];
  const sep = path.includes("?") ? "&" : "?";
  let cursor: string | undefined;
  do {
    const query = `${sep}limit=1000${cursor === undefined ? "" : `&cursor=${enc(cursor)}`}`;
    const page = await request<Page<T>>("GET", `${path}${query}`);
    items.push(...page.items);
    cursor = page.next_cursor ?? undefined;
  } while (cursor !== undefined && items.length < MAX_LISTED);
  return items;
}

export const api = {
  /** `totp` (a one-time or recovery code) only for accounts that use one (401 `totp_required`). */
  login: (username: string, password: string, totp?: string) =>
    request<LoginResponse>("POST", "/auth/login", totp ? { username, password, totp } : { username, password }, true),
  startTotp: () => request<TotpEnrolment>("POST", "/auth/totp"),
  confirmTotp: (code: string) => request<RecoveryCodes>("POST", "/auth/totp/confirm", { code }),
  disableTotp: (password: string) => request<unknown>("DELETE", "/auth/totp", { password }, true),
  logout: () => request<void>("POST", "/auth/logout", undefined, true),
  /** The single sign-on providers (public). */
  providers: () => all<SignInProvider>("/auth/providers"),
  /** Who is signed in; a 401 here just means nobody (it is how the page starts) unless `quiet` is false. */
  me: (quiet = true) => request<Me>("GET", "/auth/me", undefined, quiet),
  templates: () => all<Template>("/templates"),
  createTemplate: (template: CreateTemplate) => request<Template>("POST", "/templates", template),
  updateTemplate: (name: string, change: UpdateTemplate) =>
    request<Template>("PATCH", `/templates/${enc(name)}`, change),
  deleteTemplate: (name: string) => request<unknown>("DELETE", `/templates/${enc(name)}`),
  sessions: (owner?: string) => all<Session>(owner === undefined ? "/sessions" : `/sessions?owner=${enc(owner)}`),
  session: (id: string) => request<Session>("GET", `/sessions/${enc(id)}`),
  createSession: (template: string) => request<Session>("POST", "/sessions", { template }),
  hibernate: (id: string) => request<Session>("POST", `/sessions/${enc(id)}/hibernate`),
  wake: (id: string) => request<Session>("POST", `/sessions/${enc(id)}/wake`),
  stop: (id: string) => request<Session>("DELETE", `/sessions/${enc(id)}`),
  /** `record` asks for the viewing to be recorded (honoured under the `on_request` policy). */
  connect: (id: string, record = false) =>
    request<ConnectTicket>("POST", `/sessions/${enc(id)}/connect`, record ? { record } : undefined),
  /** A viewer ticket through share link `shareId`, carrying the link's mode. */
  connectShare: (shareId: string) => request<ConnectTicket>("POST", `/shares/${enc(shareId)}/connect`),
  shares: (sessionId: string) => all<Share>(`/sessions/${enc(sessionId)}/shares`),
  createShare: (sessionId: string, share: CreateShare) =>
    request<Share>("POST", `/sessions/${enc(sessionId)}/shares`, share),
  revokeShare: (sessionId: string, shareId: string) =>
    request<Share>("DELETE", `/sessions/${enc(sessionId)}/shares/${enc(shareId)}`),
  viewers: (sessionId: string) => all<Viewer>(`/sessions/${enc(sessionId)}/viewers`),
  disconnectViewer: (sessionId: string, viewerId: string) =>
    request<unknown>("DELETE", `/sessions/${enc(sessionId)}/viewers/${enc(viewerId)}`),
  recordings: (sessionId: string) => all<Recording>(`/sessions/${enc(sessionId)}/recordings`),
  recording: (id: string) => request<Recording>("GET", `/recordings/${enc(id)}`),
  deleteRecording: (id: string) => request<unknown>("DELETE", `/recordings/${enc(id)}`),
  /** A finished recording's stream (the StreamSpace recording format). */
  recordingData: async (id: string): Promise<ArrayBuffer> => {
    const response = await fetch(`/api/v1/recordings/${enc(id)}/data`, { credentials: "same-origin" });
    if (!response.ok) {
      const body = (await response.json().catch(() => undefined)) as { error?: { message?: string } } | undefined;
      throw new ApiError(response.status, `http_${response.status}`, body?.error?.message ?? response.statusText);
    }
    return response.arrayBuffer();
  },
  files: (id: string) => request<FileListing>("GET", `/sessions/${enc(id)}/files`),
  agents: () => all<Agent>("/agents"),
  overview: (hours: number) => request<Overview>("GET", `/overview?hours=${hours}`),
  commands: async (limit = 50) => (await request<Page<Command>>("GET", `/commands?limit=${limit}`)).items,
  users: () => all<User>("/users"),
  createUser: (user: CreateUser) => request<User>("POST", "/users", user),
  updateUser: (username: string, change: UpdateUser) => request<User>("PATCH", `/users/${enc(username)}`, change),
  /** `home` is required when the user has a home (409 `home_choice_required` otherwise). */
  deleteUser: (username: string, home?: "keep" | "delete") =>
    request<unknown>("DELETE", `/users/${enc(username)}${home ? `?home=${home}` : ""}`),
  groups: () => all<Group>("/groups"),
  createGroup: (name: string, description: string) => request<Group>("POST", "/groups", { name, description }),
  deleteGroup: (name: string) => request<unknown>("DELETE", `/groups/${enc(name)}`),
  addMember: (group: string, username: string) =>
    request<Group>("PUT", `/groups/${enc(group)}/members/${enc(username)}`),
  removeMember: (group: string, username: string) =>
    request<unknown>("DELETE", `/groups/${enc(group)}/members/${enc(username)}`),
  userQuota: (username: string) => request<UserQuota>("GET", `/users/${enc(username)}/quota`),
  setUserQuota: (username: string, change: SetQuota) =>
    request<UserQuota>("PUT", `/users/${enc(username)}/quota`, change),
  groupQuota: (name: string) => request<GroupQuota>("GET", `/groups/${enc(name)}/quota`),
  setGroupQuota: (name: string, change: SetQuota) => request<GroupQuota>("PUT", `/groups/${enc(name)}/quota`, change),
  groupRules: (name: string) => request<SessionRules>("GET", `/groups/${enc(name)}/rules`),
  setGroupRules: (name: string, rules: SessionRules) =>
    request<SessionRules>("PUT", `/groups/${enc(name)}/rules`, rules),
  sessionRules: (id: string) => request<EffectiveRules>("GET", `/sessions/${enc(id)}/rules`),
  audit: (filter: AuditFilter) => {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(filter)) {
      if (value !== undefined && value !== "") query.set(key, String(value));
    }
    const qs = query.toString();
    return request<Page<AuditRecord>>("GET", qs ? `/audit?${qs}` : "/audit");
  },
  tokens: () => all<ApiToken>("/tokens"),
  createToken: (name: string) => request<CreatedToken>("POST", "/tokens", { name }),
  revokeToken: (id: string) => request<unknown>("DELETE", `/tokens/${enc(id)}`),
};

/** The WebSocket URL to open for a ticket: absolute as given, or relative to this page. */
export function websocketUrl(ticketUrl: string): string {
  const url = new URL(ticketUrl, window.location.href);
  if (url.protocol === "http:") url.protocol = "ws:";
  if (url.protocol === "https:") url.protocol = "wss:";
  return url.toString();
}
