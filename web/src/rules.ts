// Session rules in the UI: the fields that set a template's or a group's clipboard, file-transfer
// and recording rules, and a one-line summary. "(not set)" leaves a rule to the other levels (the
// server combines the template, the user's groups and its defaults; the stricter wins).

import { ClipboardPolicy, RecordingPolicy, SessionRules, TransferPolicy } from "./api";
import { h } from "./dom";

const CLIPBOARD: [ClipboardPolicy, string][] = [
  ["both", "both ways"],
  ["to_session", "into the session only"],
  ["from_session", "out of the session only"],
  ["none", "neither way"],
];
const TRANSFER: [TransferPolicy, string][] = [
  ["both", "upload and download"],
  ["upload", "upload only"],
  ["download", "download only"],
  ["none", "no transfers"],
];
const RECORDING: [RecordingPolicy, string][] = [
  ["off", "off"],
  ["on_request", "on request"],
  ["always", "always"],
];

export interface RulesFields {
  /** The labelled fields, to place in a form. */
  fields: HTMLElement[];
  /** The rules as the fields say now. */
  read: () => SessionRules;
}

function select<T extends string>(id: string, options: [T, string][], value: T | null | undefined): HTMLSelectElement {
  const el = h(
    "select",
    { id },
    h("option", { value: "" }, "(not set)"),
    ...options.map(([v, label]) => h("option", { value: v }, label)),
  );
  el.value = value ?? "";
  return el;
}

function bytes(id: string, value: number | null | undefined): HTMLInputElement {
  return h("input", {
    id,
    type: "number",
    min: 1,
    step: 1,
    inputmode: "numeric",
    placeholder: "(not set)",
    value: value ?? "",
  });
}

/** Fields for `rules`, with ids starting `idPrefix`. */
export function rulesFields(idPrefix: string, rules: SessionRules | undefined): RulesFields {
  const r = rules ?? {};
  const clipboard = select(`${idPrefix}-clipboard`, CLIPBOARD, r.clipboard);
  const clipboardMax = bytes(`${idPrefix}-clipboard-max`, r.clipboard_max_bytes);
  const transfer = select(`${idPrefix}-transfer`, TRANSFER, r.file_transfer);
  const transferMax = bytes(`${idPrefix}-transfer-max`, r.transfer_max_bytes);
  const recording = select(`${idPrefix}-recording`, RECORDING, r.recording);
  const field = (input: HTMLElement, label: string) =>
    h("div", { class: "field" }, h("label", { for: input.id }, label), input);
  const number = (input: HTMLInputElement) => (input.value.trim() === "" ? null : Number(input.value));
  return {
    fields: [
      field(clipboard, "Clipboard"),
      field(clipboardMax, "Largest clipboard text (bytes)"),
      field(transfer, "File transfer"),
      field(transferMax, "Largest file (bytes)"),
      field(recording, "Recording"),
    ],
    read: () => ({
      clipboard: (clipboard.value || null) as ClipboardPolicy | null,
      clipboard_max_bytes: number(clipboardMax),
      file_transfer: (transfer.value || null) as TransferPolicy | null,
      transfer_max_bytes: number(transferMax),
      recording: (recording.value || null) as RecordingPolicy | null,
    }),
  };
}

/** "clipboard: into the session only · recording: always", or "—" when nothing is set. */
export function rulesText(rules: SessionRules | undefined): string {
  const r = rules ?? {};
  const label = <T extends string>(options: [T, string][], v: T | null | undefined) =>
    options.find(([o]) => o === v)?.[1];
  const parts: string[] = [];
  if (r.clipboard) parts.push(`clipboard: ${label(CLIPBOARD, r.clipboard)}`);
  if (r.clipboard_max_bytes != null) parts.push(`clipboard ≤ ${r.clipboard_max_bytes} B`);
  if (r.file_transfer) parts.push(`files: ${label(TRANSFER, r.file_transfer)}`);
  if (r.transfer_max_bytes != null) parts.push(`files ≤ ${r.transfer_max_bytes} B`);
  if (r.recording) parts.push(`recording: ${label(RECORDING, r.recording)}`);
  return parts.join(" · ") || "—";
}
