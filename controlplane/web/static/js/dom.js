// Small DOM helpers: building elements without innerHTML (so nothing the API
// returns is ever parsed as markup), formatting, and the shared states.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(element, attrs, children) {
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name === "text") element.textContent = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// h("a", {href: "#/jobs", class: "x"}, "text", childNode, [more])
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

export function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function clear(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

export function announce(text) {
  const region = document.getElementById("announce");
  if (region) region.textContent = text;
}

// --- states: every list says whether it is loading, empty or broken ---------

export function loading(text = "Loading…") {
  return h("p", { class: "loading", role: "status" }, text);
}

export function empty(title, hint) {
  return h("div", { class: "empty", role: "status" }, h("p", { class: "empty-title" }, title), hint ? h("p", {}, hint) : null);
}

export function errorBox(text, retry) {
  return h(
    "div",
    { class: "error-box", role: "alert" },
    h("p", {}, text),
    retry ? h("button", { type: "button", onclick: retry }, "Retry") : null,
  );
}

// A modal yes/no question on the native <dialog> (focus is trapped and Esc cancels).
export function confirmDialog(question, detail, yes = "Confirm") {
  return new Promise((resolve) => {
    const dialog = h(
      "dialog",
      { class: "confirm", "aria-labelledby": "confirm-title" },
      h(
        "form",
        { method: "dialog" },
        h("h2", { id: "confirm-title" }, question),
        detail ? h("p", {}, detail) : null,
        h(
          "div",
          { class: "actions" },
          h("button", { value: "no", class: "quiet", autofocus: true }, "Cancel"),
          h("button", { value: "yes", class: "danger" }, yes),
        ),
      ),
    );
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "yes");
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

// --- formatting ----------------------------------------------------------------

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

export function bytes(n) {
  if (n === null || n === undefined) return "–";
  let value = Number(n);
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value >= 100 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${UNITS[unit]}`;
}

export function percent(part, whole) {
  if (!whole) return null;
  return (100 * part) / whole;
}

export function time(iso, { compact = false } = {}) {
  if (!iso) return "–";
  const when = new Date(iso);
  const seconds = compact ? {} : { second: "2-digit" };
  return when.toLocaleString(undefined, { year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", ...seconds });
}

// A <time> element: local time shown (without seconds in tables), exact UTC in the tooltip.
export function timeEl(iso, options = {}) {
  if (!iso) return h("span", { class: "muted" }, "–");
  return h("time", { datetime: iso, title: iso }, time(iso, options));
}

export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

export function ago(iso, now = Date.now()) {
  if (!iso) return "never";
  return `${duration((now - Date.parse(iso)) / 1000)} ago`;
}

export function shortId(id) {
  return id ? id.slice(0, 8) : "–";
}

export function badge(value, kind = "status") {
  return h("span", { class: `badge ${kind}-${value}` }, value.replaceAll("_", " "));
}

// Redraw `container` with draw() without taking the keyboard focus away: the
// control that had it (same row key, same label) gets it back.
export function redrawKeepingFocus(container, draw) {
  const focused = container.contains(document.activeElement) ? document.activeElement : null;
  const key = focused?.closest("[data-row-key]")?.dataset.rowKey;
  const label = focused ? focused.getAttribute("aria-label") ?? focused.textContent : null;
  draw();
  if (focused && key !== undefined) {
    const again = [...container.querySelectorAll(`[data-row-key="${CSS.escape(key)}"] :is(a, button, input)`)]
      .find((el) => (el.getAttribute("aria-label") ?? el.textContent) === label);
    again?.focus();
  }
}
