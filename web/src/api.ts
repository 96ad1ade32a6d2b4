// The REST API under /api/v1: types (mirroring crates/proto/src/api.rs and api/identity.rs) and
// one fetch wrapper that turns `{"error":{"code","message"}}` bodies into ApiError. The browser
// session is the HttpOnly cookie `POST /auth/login` sets: the page never sees a secret, it only
// sends the cookie along (same origin), and a 401 means "sign in again".

export type SessionState =
  | "pending"
  | "starting"
  | "running"
  | "hibernated"
  | "terminated"
  | "failed";

export interface Session {
  id: string;
  template: string;
  agent_id: string | null;
  state: SessionState;
  vnc_address: string | null;
  error_message: string | null;
  owner: string;
  owner_id: string | null;
  created_at: string;
  updated_at: string;
}

export interface Template {
  name: string;
  description: string;
  command: string[];
  /** What a session of it holds; an unset dimension counts with the server's default size. */
  resources?: { cpu_millis?: number; memory_mib?: number };
  /** Groups whose members may launch it; absent or empty: everyone. */
  allowed_groups?: string[];
  created_at: string;
}

export interface Agent {
  agent_id: string;
  platform: string;
  status: "online" | "offline";
  max_sessions: number;
  active_sessions: number;
  replica_id: string | null;
  version: string | null;
  last_heartbeat_at: string | null;
}

export interface Command {
  command_id: string;
  agent_id: string;
  session_id: string | null;
  action: string;
  status: string;
  error_message: string | null;
  attempts: number;
  created_at: string;
  sent_at: string | null;
  acknowledged_at: string | null;
  completed_at: string | null;
}

/** Answer to POST /api/v1/sessions/{id}/connect. */
export interface ConnectTicket {
  token: string;
  url: string;
  expires_at: string;
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

/** What a user may do; ordered by power. */
export type Role = "user" | "operator" | "admin";

const POWER: Record<Role, number> = { user: 0, operator: 1, admin: 2 };

/** Whether `role` has at least the power of `needed`. */
export function atLeast(role: Role, needed: Role): boolean {
  return POWER[role] >= POWER[needed];
}

export interface User {
  id: string;
  username: string;
  display_name: string;
  email: string | null;
  role: Role;
  disabled: boolean;
  groups: string[];
  has_password: boolean;
  /** Whether signing in also needs a one-time code. */
  totp_enabled: boolean;
  last_login_at: string | null;
  created_at: string;
  updated_at: string;
}

export interface CreateUser {
  username: string;
  role: Role;
  password?: string;
  display_name?: string;
}

export interface UpdateUser {
  role?: Role;
  disabled?: boolean;
  password?: string;
}

export interface Group {
  id: string;
  name: string;
  description: string;
  members: string[];
  created_at: string;
  updated_at: string;
}

export interface ApiToken {
  id: string;
  name: string;
  user: string;
  prefix: string;
  created_at: string;
  last_used_at: string | null;
  expires_at: string | null;
}

/** Answer to POST /api/v1/tokens: the secret is in it this once. */
export interface CreatedToken {
  id: string;
  name: string;
  token: string;
  expires_at: string | null;
}

/** Limits at one level (user, group, or what applies); `null` (or absent): none at that level. */
export interface QuotaLimits {
  max_sessions?: number | null;
  max_cpu_millis?: number | null;
  max_memory_mib?: number | null;
}

export type QuotaDimension = keyof QuotaLimits;

/** What a user's sessions hold now: every session that is not terminal, hibernated included. */
export interface QuotaUsage {
  sessions: number;
  cpu_millis: number;
  memory_mib: number;
}

/** What one session counts against a quota. */
export interface SessionSize {
  cpu_millis: number;
  memory_mib: number;
}

/** Answer to GET /api/v1/auth/me. */
export interface Me {
  user: User;
  /** The limits that apply (`null`: unlimited). */
  quota: QuotaLimits;
  usage: QuotaUsage;
  /** What a session counts in a dimension its template does not size. */
  default_session_size?: SessionSize;
}

/** GET /api/v1/users/{username}/quota: the user's own limits, what applies, and use. */
export interface UserQuota {
  username: string;
  limits: QuotaLimits;
  effective: QuotaLimits;
  usage: QuotaUsage;
}

export interface GroupQuota {
  name: string;
  limits: QuotaLimits;
}

/** PUT …/quota: an omitted field stays as it is, `null` clears it (the level inherits). */
export type SetQuota = QuotaLimits;

export interface AuditRecord {
  id: number;
  at: string;
  /** Who, in words (`user:alice`, `anonymous:bob` for a failed sign-in). */
  actor: string;
  actor_id: string | null;
  action: string;
  target: string;
  detail: unknown;
  client_addr: string | null;
}

/** GET /api/v1/audit's query; every field narrows the answer. */
export interface AuditFilter {
  actor?: string;
  action?: string;
  target?: string;
  /** RFC 3339 times. */
  since?: string;
  until?: string;
  cursor?: string;
  limit?: number;
}

/** A page of a listing; `next_cursor` is absent on the last page. */
export interface Page<T> {
  items: T[];
  next_cursor?: string | null;
}

/** A single sign-on provider, one button on the sign-in page. */
export interface SignInProvider {
  id: string;
  display_name: string;
  /** Where the browser goes to sign in; `?return_to=/path` brings it back there. */
  login_url: string;
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
    request<{ user: User }>("POST", "/auth/login", totp ? { username, password, totp } : { username, password }, true),
  startTotp: () => request<{ secret: string; otpauth_uri: string }>("POST", "/auth/totp"),
  confirmTotp: (code: string) => request<{ recovery_codes: string[] }>("POST", "/auth/totp/confirm", { code }),
  disableTotp: (password: string) => request<unknown>("DELETE", "/auth/totp", { password }, true),
  logout: () => request<void>("POST", "/auth/logout", undefined, true),
  /** The single sign-on providers (public). */
  providers: () => request<SignInProvider[]>("GET", "/auth/providers", undefined, true),
  /** Who is signed in; a 401 here just means nobody (it is how the page starts) unless `quiet` is false. */
  me: (quiet = true) => request<Me>("GET", "/auth/me", undefined, quiet),
  templates: () => all<Template>("/templates"),
  sessions: (owner?: string) => all<Session>(owner === undefined ? "/sessions" : `/sessions?owner=${enc(owner)}`),
  session: (id: string) => request<Session>("GET", `/sessions/${enc(id)}`),
  createSession: (template: string) => request<Session>("POST", "/sessions", { template }),
  hibernate: (id: string) => request<Session>("POST", `/sessions/${enc(id)}/hibernate`),
  wake: (id: string) => request<Session>("POST", `/sessions/${enc(id)}/wake`),
  stop: (id: string) => request<Session>("DELETE", `/sessions/${enc(id)}`),
  connect: (id: string) => request<ConnectTicket>("POST", `/sessions/${enc(id)}/connect`),
  agents: () => all<Agent>("/agents"),
  commands: async (limit = 50) => (await request<Page<Command>>("GET", `/commands?limit=${limit}`)).items,
  users: () => all<User>("/users"),
  createUser: (user: CreateUser) => request<User>("POST", "/users", user),
  updateUser: (username: string, change: UpdateUser) => request<User>("PATCH", `/users/${enc(username)}`, change),
  deleteUser: (username: string) => request<unknown>("DELETE", `/users/${enc(username)}`),
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
