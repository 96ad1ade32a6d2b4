// Quotas in the UI: what applies and what is used (profile, catalog, an admin's user page), the
// check a launch button makes before asking the server, and the form admins set limits with.
// The server decides (409 `quota_exceeded`); the check here only explains in advance.

import { Me, QuotaDimension, QuotaLimits, QuotaUsage, SessionSize, SetQuota, Template } from "./api";
import { h } from "./dom";

interface Dimension {
  key: QuotaDimension;
  label: string;
  unit: string;
  /** The unit in a sentence: "3 of 4 sessions in use". */
  noun: string;
  used: (u: QuotaUsage) => number;
  /** What one session of `t` needs, with `size` for what it leaves unset (unknown: undefined). */
  needs: (t: Template, size?: SessionSize) => number | undefined;
}

const DIMENSIONS: Dimension[] = [
  { key: "max_sessions", label: "Sessions", unit: "", noun: "sessions", used: (u) => u.sessions, needs: () => 1 },
  {
    key: "max_cpu_millis",
    label: "CPU",
    unit: " millicores",
    noun: "millicores of CPU",
    used: (u) => u.cpu_millis,
    needs: (t, size) => t.resources?.cpu_millis ?? size?.cpu_millis,
  },
  {
    key: "max_memory_mib",
    label: "Memory",
    unit: " MiB",
    noun: "MiB of memory",
    used: (u) => u.memory_mib,
    needs: (t, size) => t.resources?.memory_mib ?? size?.memory_mib,
  },
];

function limitOf(limits: QuotaLimits, key: QuotaDimension): number | null {
  return limits[key] ?? null;
}

/** "1 of 3", "2048 of 4096 MiB", or "1 (no limit)". */
function useText(d: Dimension, used: number, limit: number | null): string {
  return limit === null ? `${used}${d.unit} (no limit)` : `${used} of ${limit}${d.unit}`;
}

/** A table of each dimension's use against the limit that applies. */
export function quotaTable(quota: QuotaLimits, usage: QuotaUsage, id = "quota"): HTMLTableElement {
  return h(
    "table",
    { id, class: "quota" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Quota"), h("th", { scope: "col" }, "In use"))),
    h(
      "tbody",
      {},
      ...DIMENSIONS.map((d) =>
        h(
          "tr",
          { "data-dimension": d.key },
          h("th", { scope: "row" }, d.label),
          h("td", {}, useText(d, d.used(usage), limitOf(quota, d.key))),
        ),
      ),
    ),
  );
}

/** One line: "Sessions 1 of 3 · CPU 500 (no limit) · Memory …". */
export function quotaSummary(quota: QuotaLimits, usage: QuotaUsage): string {
  return DIMENSIONS.map((d) => `${d.label} ${useText(d, d.used(usage), limitOf(quota, d.key))}`).join(" · ");
}

/**
 * Why launching `template` would go over the quota (every dimension it would), or null when it
 * fits: counted as the server counts it, with its default size where the template sets none.
 */
export function wouldExceed(me: Me, template: Template): string | null {
  const { quota, usage } = me;
  const over: string[] = [];
  for (const d of DIMENSIONS) {
    const limit = limitOf(quota, d.key);
    const needs = d.needs(template, me.default_session_size ?? undefined);
    if (limit === null || needs === undefined) continue;
    const used = d.used(usage);
    if (used + needs > limit) over.push(`${used} of ${limit} ${d.noun} in use, and this needs ${needs} more`);
  }
  return over.length ? `Launching this would exceed your quota: ${over.join("; ")}.` : null;
}

/**
 * A form for the limits set at one level (a user or a group): empty fields inherit, Save sends
 * every field (empty as `null`), Clear sends `null` for all of them.
 */
export function quotaForm(
  idPrefix: string,
  subject: string,
  limits: QuotaLimits,
  save: (change: SetQuota) => Promise<void>,
  emptyMeans = "inherit",
): HTMLFormElement {
  const inputs = DIMENSIONS.map((d) => {
    const value = limitOf(limits, d.key);
    return h("input", {
      id: `${idPrefix}-${d.key}`,
      type: "number",
      min: 0,
      step: 1,
      inputmode: "numeric",
      placeholder: emptyMeans,
      value: value === null ? "" : value,
    });
  });
  const saveButton = h("button", { type: "submit" }, "Save quota");
  const clear = h("button", { type: "button", "aria-label": `Clear the quota of ${subject}` }, "Clear quota");
  const form = h(
    "form",
    { class: "form-row", "aria-label": `Quota of ${subject}` },
    ...DIMENSIONS.map((d, i) =>
      h("div", {}, h("label", { for: inputs[i].id }, quotaLabel(d)), inputs[i]),
    ),
    saveButton,
    clear,
  );
  const submit = async (change: SetQuota) => {
    saveButton.disabled = true;
    clear.disabled = true;
    try {
      await save(change);
    } finally {
      saveButton.disabled = false;
      clear.disabled = false;
    }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const change: SetQuota = {};
    DIMENSIONS.forEach((d, i) => {
      const text = inputs[i].value.trim();
      change[d.key] = text === "" ? null : Number(text);
    });
    void submit(change);
  });
  clear.addEventListener("click", () => {
    const change: SetQuota = {};
    for (const d of DIMENSIONS) change[d.key] = null;
    void submit(change);
  });
  return form;
}

function quotaLabel(d: Dimension): string {
  switch (d.key) {
    case "max_sessions":
      return "Max sessions";
    case "max_cpu_millis":
      return "Max CPU (millicores)";
    case "max_memory_mib":
      return "Max memory (MiB)";
  }
}
