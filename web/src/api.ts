// The REST API under /api/v1: types (mirroring crates/proto/src/api.rs) and one fetch wrapper
// that sends the admin token and turns `{"error":{"code","message"}}` bodies into ApiError.

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
  created_at: string;
  updated_at: string;
}

export interface Template {
  name: string;
  description: string;
  command: string[];
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

const TOKEN_KEY = "streamspace.token";

export function getToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token: string): void {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken(): void {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** Called when the API answers 401: the token is gone or wrong. */
let onUnauthorized: () => void = () => {};

export function setUnauthorizedHandler(handler: () => void): void {
  onUnauthorized = handler;
}

/** Calls the API; `override` is a token to try instead of the stored one. */
async function request<T>(method: string, path: string, body?: unknown, override?: string): Promise<T> {
  const token = override ?? getToken();
  const headers: Record<string, string> = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(`/api/v1${path}`, {
      method,
      headers,
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
    if (response.status === 401 && override === undefined) onUnauthorized();
    throw new ApiError(response.status, code, message);
  }
  return json as T;
}

const enc = encodeURIComponent;

export const api = {
  /** Checks a token without storing it. */
  check: (token: string) => request<Agent[]>("GET", "/agents", undefined, token),
  templates: () => request<Template[]>("GET", "/templates"),
  sessions: () => request<Session[]>("GET", "/sessions"),
  session: (id: string) => request<Session>("GET", `/sessions/${enc(id)}`),
  createSession: (template: string) => request<Session>("POST", "/sessions", { template }),
  hibernate: (id: string) => request<Session>("POST", `/sessions/${enc(id)}/hibernate`),
  wake: (id: string) => request<Session>("POST", `/sessions/${enc(id)}/wake`),
  stop: (id: string) => request<Session>("DELETE", `/sessions/${enc(id)}`),
  connect: (id: string) => request<ConnectTicket>("POST", `/sessions/${enc(id)}/connect`),
  agents: () => request<Agent[]>("GET", "/agents"),
  commands: (limit = 50) => request<Command[]>("GET", `/commands?limit=${limit}`),
};

/** The WebSocket URL to open for a ticket: absolute as given, or relative to this page. */
export function websocketUrl(ticketUrl: string): string {
  const url = new URL(ticketUrl, window.location.href);
  if (url.protocol === "http:") url.protocol = "ws:";
  if (url.protocol === "https:") url.protocol = "wss:";
  return url.toString();
}
