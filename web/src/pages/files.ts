// The session's transfer folder (~/Transfers) beside the viewer: drop files (or pick them) to
// upload with a progress bar, and download what is listed. Uploads use XMLHttpRequest for its
// upload progress events; the browser's session cookie authenticates them (same origin).

import { ApiError, FileEntry, api } from "../api";
import { h, replace } from "../dom";

/** The file's URL in the session's transfer folder (each path segment encoded). */
export function fileUrl(id: string, path: string): string {
  const segments = path.split("/").map(encodeURIComponent).join("/");
  return `/api/v1/sessions/${encodeURIComponent(id)}/files/${segments}`;
}

/** Sends `file` as `name`; `progress` gets the fraction sent. Resolves when the file is in place. */
function upload(id: string, name: string, file: File, progress: (sent: number) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", fileUrl(id, name));
    xhr.withCredentials = true;
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) progress(e.loaded / e.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) return resolve();
      let message = `${xhr.status} ${xhr.statusText}`;
      try {
        message = (JSON.parse(xhr.responseText) as { error: { message: string } }).error.message;
      } catch {
        // not JSON: keep the status line
      }
      reject(new ApiError(xhr.status, "upload_failed", message));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "network", "the upload could not reach the server")));
    xhr.send(file);
  });
}

/** The panel; `refresh` reloads the listing (call it once the session runs). */
export function filesPanel(id: string): { element: HTMLElement; refresh: () => Promise<void> } {
  const list = h("ul", { class: "files-list", id: "files-list", "aria-live": "polite" });
  const message = h("p", { class: "files-status", role: "status" });
  const bar = h("progress", { id: "upload-progress", max: 1, value: 0, hidden: true });
  const picker = h("input", { type: "file", id: "files-picker", multiple: true });
  const drop = h(
    "div",
    { class: "files-drop", id: "files-drop", tabindex: 0 },
    "Drop files here to upload them into ~/Transfers, or ",
    h("label", { for: "files-picker", class: "link" }, "choose files"),
    picker,
  );
  const element = h(
    "section",
    { class: "files", "aria-labelledby": "files-title" },
    h("h2", { id: "files-title" }, "Files (~/Transfers)"),
    drop,
    bar,
    message,
    list,
  );

  const entry = (e: FileEntry) =>
    e.kind === "file"
      ? h("li", {}, h("a", { href: fileUrl(id, e.name), download: e.name }, e.name), ` ${e.size} bytes`)
      : h("li", {}, `${e.name}/`);

  const refresh = async () => {
    try {
      const listing = await api.files(id);
      replace(list, ...listing.entries.map(entry));
      if (listing.entries.length === 0) replace(list, h("li", { class: "muted" }, "The folder is empty."));
    } catch (e) {
      message.textContent = e instanceof ApiError ? e.message : String(e);
    }
  };

  const send = async (files: FileList | null) => {
    if (!files) return;
    for (const file of Array.from(files)) {
      bar.hidden = false;
      bar.value = 0;
      message.textContent = `Uploading ${file.name}…`;
      try {
        await upload(id, file.name, file, (sent) => (bar.value = sent));
        message.textContent = `Uploaded ${file.name}.`;
      } catch (e) {
        message.textContent = `${file.name}: ${(e as Error).message}`;
      }
      bar.hidden = true;
    }
    await refresh();
  };

  picker.addEventListener("change", () => void send(picker.files));
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    void send(e.dataTransfer?.files ?? null);
  });
  return { element, refresh };
}
