// Small DOM helpers shared by the panels: building elements, copy buttons, clock times.

export const byId = (id) => document.getElementById(id);

// element("p", {className: "muted"}, "text", child, ...): properties are assigned as they are,
// except `dataset` and attributes named in `attributes`.
export function element(tag, properties = {}, ...children) {
  const made = document.createElement(tag);
  const { dataset = {}, attributes = {}, ...rest } = properties;
  Object.assign(made, rest);
  Object.assign(made.dataset, dataset);
  for (const [name, value] of Object.entries(attributes)) made.setAttribute(name, value);
  made.append(...children.filter((child) => child !== null && child !== undefined));
  return made;
}

export function paragraph(text, className = "") {
  return element("p", className ? { className } : {}, text);
}

// "16:40:05", the browser's local time, in a <time> element that carries the exact instant.
export function clock(date) {
  return element("time", { dateTime: date.toISOString() }, clockText(date));
}

export function clockText(date) {
  return date.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

// A timestamp of the API ("2025-01-02T03:04:05.123456Z") as "2025-01-02 03:04:05 UTC".
export function utcText(timestamp) {
  return timestamp.replace("T", " ").replace(/(\.\d+)?(Z|\+00:00)$/, " UTC");
}

const COPIED_SHOWN_MS = 1500;

// A button that copies `text()` to the clipboard and says so; `what` names it for screen readers.
export function copyButton(text, what) {
  const button = element("button", {
    type: "button",
    className: "copy secondary small-button",
    textContent: "Copy",
    attributes: { "aria-label": `Copy ${what}` },
  });
  button.addEventListener("click", async () => {
    const copied = await copyText(text());
    button.textContent = copied ? "Copied" : "Select and copy it";
    setTimeout(() => {
      button.textContent = "Copy";
    }, COPIED_SHOWN_MS);
  });
  return button;
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard API (a page on a plain-http, non-loopback address): the old way.
    const scratch = element("textarea", { value: text, readOnly: true, className: "visually-hidden" });
    document.body.append(scratch);
    scratch.select();
    const copied = document.execCommand("copy");
    scratch.remove();
    return copied;
  }
}

// `id` in a <code> with a copy button after it.
export function copyableId(id, what) {
  return element("span", { className: "copyable" }, element("code", {}, id), " ", copyButton(() => id, what));
}

export function counted(count, noun) {
  return `${count.toLocaleString("en-US")} ${noun}${Number(count) === 1 ? "" : "s"}`;
}
