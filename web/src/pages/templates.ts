// Operators: the templates, with a form to create one or change one. Each field maps to the API's
// template field; an emptied field is reset (PATCH null), and the server checks the result like
// a new template and names the field it refuses.

import { HomePolicy, Template, TemplateIcon, api } from "../api";
import { clearMessages, h, replace, runAction, showError, showNotice, newestOnly } from "../dom";
import { rulesFields, rulesText } from "../rules";

const HOMES: [HomePolicy, string][] = [
  ["none", "none: the home lives and dies with the session"],
  ["delete", "a volume per session, deleted when it stops"],
  ["retain", "a volume per session, kept when it stops"],
  ["user", "the user's own home, shared by their sessions"],
];

const ICONS: TemplateIcon[] = [
  "terminal",
  "desktop",
  "browser",
  "office",
  "code",
  "graphics",
  "media",
  "game",
  "science",
  "tools",
];

/** A comma-separated list as its non-empty, trimmed items. */
const list = (text: string) =>
  text
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");

export function templatesPage(root: HTMLElement): void {
  const body = h("tbody");
  const headers = ["Template", "Category", "Tags", "Runs", "Rules", "Actions"];
  const editor = h("section", { id: "template-editor", "aria-live": "polite" });
  const newButton = h("button", { type: "button" }, "New template");
  newButton.addEventListener("click", () => edit(null));
  replace(
    root,
    h("div", { class: "row spread" }, h("h1", {}, "Templates"), newButton),
    h("table", {}, h("thead", {}, h("tr", {}, ...headers.map((c) => h("th", { scope: "col" }, c)))), body),
    editor,
  );

  const refresh = newestOnly(api.templates, (templates) => {
    if (templates.length === 0) {
      replace(body, h("tr", {}, h("td", { colspan: headers.length }, "No templates yet.")));
      return;
    }
    replace(body, ...templates.map(row));
  });

  function row(t: Template): HTMLTableRowElement {
    const runs = t.image ? `image ${t.image}` : t.command.join(" ");
    return h(
      "tr",
      { "data-template-row": t.name },
      h("td", {}, t.name),
      h("td", {}, t.category ?? "—"),
      h("td", {}, t.tags.length ? t.tags.join(", ") : "—"),
      h("td", {}, h("code", {}, runs)),
      h("td", { "data-rules": t.name }, rulesText(t.rules)),
      h(
        "td",
        { class: "actions" },
        h("button", { type: "button", onclick: () => edit(t) }, "Edit"),
        " ",
        h(
          "button",
          {
            type: "button",
            class: "danger",
            onclick: () => {
              if (!confirm(`Delete the template ${t.name}? Running sessions are not affected.`)) return;
              void runAction("Deleting the template", () => api.deleteTemplate(t.name), refresh, `Deleted ${t.name}.`);
            },
          },
          "Delete",
        ),
      ),
    );
  }

  /** Opens the form for `t`, or for a new template. */
  function edit(t: Template | null): void {
    clearMessages();
    const field = (id: string, label: string, input: HTMLElement, hint?: string) =>
      h("div", { class: "field" }, h("label", { for: id }, label), input, hint ? h("small", { class: "muted" }, hint) : null);
    const name = h("input", { id: "template-name", type: "text", required: true, spellcheck: "false", value: t?.name ?? "" });
    name.disabled = t !== null;
    const description = h("input", { id: "template-description", type: "text", value: t?.description ?? "" });
    const command = h("textarea", { id: "template-command", rows: 3, spellcheck: "false" });
    command.value = (t?.command ?? []).join("\n");
    const image = h("input", { id: "template-image", type: "text", spellcheck: "false", value: t?.image ?? "" });
    const category = h("input", { id: "template-category", type: "text", value: t?.category ?? "" });
    const tags = h("input", { id: "template-tags", type: "text", spellcheck: "false", value: (t?.tags ?? []).join(", ") });
    const icon = h(
      "select",
      { id: "template-icon" },
      h("option", { value: "" }, "(none)"),
      ...ICONS.map((i) => h("option", { value: i }, i)),
    );
    icon.value = t?.icon ?? "";
    const groups = h("input", {
      id: "template-groups",
      type: "text",
      spellcheck: "false",
      value: (t?.allowed_groups ?? []).join(", "),
    });
    const number = (id: string, value: number | null | undefined, min: number, placeholder = "") =>
      h("input", { id, type: "number", min, step: 1, inputmode: "numeric", placeholder, value: value ?? "" });
    const vncPort = number("template-vnc-port", t?.ports.vnc ?? 5901, 1);
    const cpu = number("template-cpu", t?.resources.cpu_millis, 1, "no limit");
    const memory = number("template-memory", t?.resources.memory_mib, 1, "no limit");
    const home = h("select", { id: "template-home" }, ...HOMES.map(([v, label]) => h("option", { value: v }, label)));
    home.value = t?.persistent_home ?? "none";
    const idle = number("template-idle", t?.idle_timeout_secs, 1, "never");
    const rules = rulesFields("template-rules", t?.rules);
    const save = h("button", { type: "submit" }, t ? "Save changes" : "Create template");
    const cancel = h("button", { type: "button", onclick: () => replace(editor) }, "Cancel");
    const form = h(
      "form",
      { class: "template-form", "aria-label": t ? `Edit the template ${t.name}` : "Create a template" },
      h("h2", {}, t ? `Edit ${t.name}` : "New template"),
      field("template-name", "Name", name),
      field("template-description", "Description", description),
      field("template-command", "Command", command, "One argument per line; the first is the program."),
      field("template-image", "Image", image, "For the docker and kubernetes runtimes."),
      field("template-category", "Category", category, "The catalog's heading."),
      field("template-tags", "Tags", tags, "Comma-separated: a-z, 0-9 and '-'."),
      field("template-icon", "Icon", icon),
      field("template-groups", "Allowed groups", groups, "Comma-separated; empty: every user may launch it."),
      h(
        "fieldset",
        {},
        h("legend", {}, "Runtime"),
        field("template-vnc-port", "VNC port", vncPort, "Where the image's VNC server listens (container runtimes)."),
        field("template-cpu", "CPU (millicores)", cpu),
        field("template-memory", "Memory (MiB)", memory),
        field("template-home", "Home", home),
        field("template-idle", "Idle timeout (seconds)", idle, "Hibernate after this long without a viewer."),
      ),
      h(
        "fieldset",
        {},
        h("legend", {}, "Session rules"),
        h(
          "small",
          { class: "muted" },
          "Copied into each new session. A rule not set here is left to the user's groups and the server's defaults; where several set one, the stricter wins.",
        ),
        ...rules.fields,
      ),
      h("div", { class: "row" }, save, cancel),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearMessages();
      const args = command.value.split("\n").map((s) => s.trim()).filter((s) => s !== "");
      const text = (input: HTMLInputElement) => input.value.trim();
      const num = (input: HTMLInputElement) => (input.value.trim() === "" ? null : Number(input.value));
      const runtime = {
        ports: { vnc: num(vncPort) ?? 5901 },
        resources: { cpu_millis: num(cpu), memory_mib: num(memory) },
        persistent_home: home.value as HomePolicy,
        idle_timeout_secs: num(idle),
        rules: rules.read(),
      };
      save.disabled = true;
      try {
        if (t) {
          await api.updateTemplate(t.name, {
            description: text(description) || null,
            command: args.length ? args : null,
            image: text(image) || null,
            category: text(category) || null,
            tags: list(tags.value).length ? list(tags.value) : null,
            icon: (icon.value || null) as TemplateIcon | null,
            allowed_groups: list(groups.value).length ? list(groups.value) : null,
            ...runtime,
          });
          showNotice(`Saved ${t.name}.`);
        } else {
          await api.createTemplate({
            name: text(name),
            description: text(description),
            command: args,
            image: text(image) || null,
            category: text(category) || null,
            tags: list(tags.value),
            icon: (icon.value || null) as TemplateIcon | null,
            allowed_groups: list(groups.value),
            ...runtime,
          });
          showNotice(`Created ${text(name)}.`);
        }
        replace(editor);
        await refresh();
      } catch (e) {
        showError(`${t ? "Saving" : "Creating"} the template failed: ${(e as Error).message}`);
      } finally {
        save.disabled = false;
      }
    });
    replace(editor, form);
    (t ? description : name).focus();
  }

  refresh().catch((e: Error) => showError(e.message));
}
