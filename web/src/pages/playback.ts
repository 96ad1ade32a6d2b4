// Playback of a recorded viewing: the recording's chunks fed, in time, to noVNC's RFB through a
// channel that stands in for its WebSocket. Seeking back replays from the start at once up to
// the point (RFB is a stream of changes: a frame depends on all before it); seeking forward
// delivers what lies between at once.

import RFB from "@novnc/novnc";
import { Recording, api } from "../api";
import { h, replace, time } from "../dom";
import { RecordedChunk, ReplayChannel, parseRecording } from "../recording";

const SPEEDS = [0.5, 1, 2, 4];

export function playbackPage(root: HTMLElement, id: string): () => void {
  let closed = false;
  const status = h("p", { class: "viewer-status", role: "status", "aria-live": "polite" }, "Loading the recording…");
  const title = h("h1", { id: "playback-title" }, "Recording ", h("code", {}, id.slice(-8)));
  const about = h("p", { class: "muted" });
  const screen = h("div", { class: "screen", id: "screen", "aria-label": "Recorded desktop" });
  const play = h("button", { type: "button", id: "play", disabled: true }, "Play");
  const seek = h("input", { type: "range", id: "seek", min: 0, max: 0, value: 0, step: 1, disabled: true, "aria-label": "Position" });
  const clock = h("span", { id: "clock" }, "0:00 / 0:00");
  const speed = h(
    "select",
    { id: "speed", "aria-label": "Speed" },
    ...SPEEDS.map((s) => h("option", { value: s, selected: s === 1 }, `${s}×`)),
  );
  const view = h(
    "section",
    { class: "viewer playback", "data-play-state": "loading", "aria-labelledby": "playback-title" },
    h("div", { class: "row spread" }, title, h("a", { href: "/sessions", "data-link": "" }, "My sessions")),
    about,
    status,
    screen,
    h("div", { class: "row viewer-tools" }, play, seek, clock, h("label", { class: "inline" }, "Speed ", speed)),
  );
  replace(root, view);

  let records: RecordedChunk[] = [];
  let duration = 0;
  let rfb: RFB | null = null;
  let channel: ReplayChannel | null = null;
  // Next record to deliver, and the recording's time it has been delivered up to.
  let next = 0;
  let position = 0;
  let playing = false;
  // Wall-clock moment and recording time playing last (re)started from.
  let anchorWall = 0;
  let anchorAt = 0;
  let timer: number | undefined;

  const setState = (state: string, message?: string) => {
    view.dataset.playState = state;
    if (message !== undefined) status.textContent = message;
    play.textContent = state === "playing" ? "Pause" : "Play";
  };
  const showClock = () => {
    seek.value = String(Math.round(position));
    view.dataset.position = String(Math.round(position));
    clock.textContent = `${minutes(position)} / ${minutes(duration)}`;
  };

  /** A fresh RFB at the start of the recording. */
  const restart = () => {
    rfb?.disconnect();
    screen.replaceChildren();
    channel = new ReplayChannel();
    const client = new RFB(screen, channel, { shared: true });
    client.viewOnly = true;
    client.scaleViewport = true;
    client.resizeSession = false;
    client.background = "#1e1e1e";
    rfb = client;
    channel.open();
    next = 0;
    position = 0;
  };

  /** Delivers every record up to recording time `t`. */
  const deliverUntil = (t: number) => {
    while (next < records.length && records[next].at <= t) {
      const record = records[next++];
      if (record.kind === "data") channel?.deliver(record.bytes);
    }
    position = Math.min(t, duration);
  };

  const tick = () => {
    timer = undefined;
    if (!playing || closed) return;
    const t = anchorAt + (performance.now() - anchorWall) * Number(speed.value);
    deliverUntil(t);
    showClock();
    if (next >= records.length && position >= duration) {
      playing = false;
      setState("ended", "End of the recording.");
      return;
    }
    timer = window.setTimeout(tick, 40);
  };

  const start = () => {
    if (next >= records.length && position >= duration) restart();
    playing = true;
    anchorWall = performance.now();
    anchorAt = position;
    setState("playing", "Playing.");
    tick();
  };
  const pause = () => {
    playing = false;
    if (timer !== undefined) window.clearTimeout(timer);
    timer = undefined;
    setState("paused", "Paused.");
  };

  const seekTo = (t: number) => {
    if (t < position) restart();
    deliverUntil(t);
    anchorWall = performance.now();
    anchorAt = position;
    showClock();
  };

  play.addEventListener("click", () => (playing ? pause() : start()));
  seek.addEventListener("input", () => seekTo(Number(seek.value)));
  speed.addEventListener("change", () => {
    anchorWall = performance.now();
    anchorAt = position;
  });

  void (async () => {
    let recording: Recording;
    try {
      recording = await api.recording(id);
      records = parseRecording(await api.recordingData(id));
    } catch (e) {
      setState("failed", `Cannot play this recording: ${(e as Error).message}`);
      return;
    }
    if (closed) return;
    duration = records.reduce((end, r) => (r.kind === "data" ? Math.max(end, r.at) : end), 0);
    about.textContent =
      `Session ${recording.session_id.slice(-8)} viewed by ${recording.viewer} from ${time(recording.started_at)}` +
      ` to ${time(recording.ended_at)}${recording.complete ? "" : " (incomplete)"}.`;
    seek.max = String(duration);
    seek.disabled = false;
    play.disabled = false;
    restart();
    showClock();
    start();
  })();

  return () => {
    closed = true;
    if (timer !== undefined) window.clearTimeout(timer);
    rfb?.disconnect();
  };
}

function minutes(ms: number): string {
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}
