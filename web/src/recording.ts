// Reading the StreamSpace recording format (version 1; see docs/ARCHITECTURE.md, "Recording of
// viewings"): "SSREC", a version byte, then records of kind (1 byte), time (u32 BE, ms since the
// start), length (u32 BE) and payload — kind 1 a chunk of the server→viewer RFB stream, kind 2 a
// JSON event.

export type RecordedEvent = { event: string; [field: string]: unknown };

export type RecordedChunk =
  | { kind: "data"; at: number; bytes: Uint8Array }
  | { kind: "event"; at: number; event: RecordedEvent };

/** Every whole record of a recording; throws on another file or version. */
export function parseRecording(buffer: ArrayBuffer): RecordedChunk[] {
  const bytes = new Uint8Array(buffer);
  const view = new DataView(buffer);
  const magic = new TextDecoder().decode(bytes.subarray(0, 5));
  if (magic !== "SSREC") throw new Error("this is not a StreamSpace recording");
  if (bytes[5] !== 1) throw new Error(`recording format version ${bytes[5]} is not supported`);
  const records: RecordedChunk[] = [];
  let at = 6;
  while (at + 9 <= bytes.length) {
    const kind = bytes[at];
    const time = view.getUint32(at + 1);
    const length = view.getUint32(at + 5);
    const start = at + 9;
    if (start + length > bytes.length) break; // cut short: keep what is whole
    const payload = bytes.subarray(start, start + length);
    if (kind === 1) records.push({ kind: "data", at: time, bytes: payload });
    else if (kind === 2) records.push({ kind: "event", at: time, event: JSON.parse(new TextDecoder().decode(payload)) });
    else throw new Error(`unknown record kind ${kind}`);
    at = start + length;
  }
  return records;
}

/**
 * A WebSocket-like channel noVNC's RFB accepts in place of a socket: what it sends goes nowhere
 * (a recording answers nothing), and `deliver` hands it the recorded server bytes.
 */
export class ReplayChannel {
  binaryType = "arraybuffer";
  protocol = "";
  readyState: "connecting" | "open" | "closed" = "connecting";
  onopen: ((e: Event) => void) | null = null;
  onmessage: ((e: MessageEvent) => void) | null = null;
  onclose: ((e: CloseEvent) => void) | null = null;
  onerror: ((e: Event) => void) | null = null;

  /** Opens once noVNC has attached its handlers. */
  open(): void {
    this.readyState = "open";
    this.onopen?.(new Event("open"));
  }

  send(_data: unknown): void {}

  close(): void {
    if (this.readyState === "closed") return;
    this.readyState = "closed";
    this.onclose?.(new CloseEvent("close", { code: 1000, wasClean: true }));
  }

  deliver(bytes: Uint8Array): void {
    if (this.readyState !== "open") return;
    const copy = bytes.slice().buffer;
    this.onmessage?.(new MessageEvent("message", { data: copy }));
  }
}
