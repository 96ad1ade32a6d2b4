// Who is signed in: the user `GET /auth/me` answered, kept for the pages that depend on the role.

import { Role, User, atLeast } from "./api";

let current: User | null = null;

export function signedInUser(): User | null {
  return current;
}

export function setSignedInUser(user: User | null): void {
  current = user;
}

/** Whether the signed-in user has at least `role`. */
export function may(role: Role): boolean {
  return current !== null && atLeast(current.role, role);
}
