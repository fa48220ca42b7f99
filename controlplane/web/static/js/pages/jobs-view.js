// What the jobs page draws, as functions of what the API answered: the
// filter panel, the table rows, the histogram figure, the fallback banner;
// and the order the API sorts jobs in. No requests and no state here.

import * as charts from "../charts.js";
import { badge, h, shortId, timeEl } from "../dom.js";
import * as qt from "../querytext.js";

const FACETS = [
  ["status", "Status"],
  ["kind", "Kind"],
  ["user", "User"],
  ["host", "Host"],
];
const SPANS = [
  [null, "Any time"],
  ["1h", "Last hour"],
  ["24h", "Last 24 h"],
  ["7d", "Last 7 days"],
  ["30d", "Last 30 days"],
];
export const COLUMNS = ["Job", "Status", "Kind", "User", "Host", "Image / workspace", "Created", "Error"];

// --- order ---------------------------------------------------------------------------

// The sort of a canonical query text (the API's `query` field).
export function sortOf(canonical) {
  const token = qt.tokens(canonical).map(qt.parseToken).find((t) => t.key === "sort");
  if (!token) return { field: "created_at", descending: true };
  return { field: token.value.replace(/^-/, ""), descending: token.value.startsWith("-") };
}

// A comparator placing jobs as the API does: the sort field (missing values
// last), then the id in the same direction. Times are ISO strings of one
// format, so they compare as strings.
export function comparator({ field, descending }) {
  return (a, b) => {
    const va = a[field];
    const vb = b[field];
    if (va !== vb) {
      if (va === null) return 1;
      if (vb === null) return -1;
      return (va < vb ? -1 : 1) * (descending ? -1 : 1);
    }
    if (a.id === b.id) return 0;
    return (a.id < b.id ? -1 : 1) * (descending ? -1 : 1);
  };
}

// --- table -----------------------------------------------------------------------------

export function jobRow(job, regex) {
  const target = [job.image_name, job.workspace_name].filter(Boolean).join(" / ") || "–";
  return h(
    "tr",
    { dataset: { jobId: job.id, version: job.version, status: job.status } },
    h("td", {}, h("a", { href: `#/jobs/${job.id}`, title: job.id, "aria-label": `Job ${job.id}` }, h("code", {}, shortId(job.id)))),
    h("td", {}, badge(job.status)),
    h("td", { class: "kind" }, job.kind.replaceAll("_", " ")),
    h("td", {}, job.user_name ?? "–"),
    h("td", {}, job.host_name ?? "–"),
    h("td", {}, target),
    h("td", { class: "nowrap" }, timeEl(job.created_at, { compact: true })),
    h("td", { class: "error-text" }, h("div", { class: "clamp" }, highlighted(job.error, regex))),
  );
}

function highlighted(text, regex) {
  if (!text) return h("span", { class: "muted" }, "–");
  return qt.pieces(text, regex).map(([piece, match]) => (match ? h("mark", {}, piece) : piece));
}

export function jobsTable(jobs, regex, sort) {
  return h(
    "table",
    { class: "jobs" },
    h("caption", { class: "visually-hidden" }, "Jobs matching the search, ", sort.descending ? "newest first" : "oldest first"),
    h("thead", {}, h("tr", {}, COLUMNS.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, jobs.map((job) => jobRow(job, regex))),
  );
}

// --- banner and summary ------------------------------------------------------------------

export function fallbackBanner(page) {
  if (page.backend !== "postgresql" || !page.degraded) return null;
  return h(
    "div",
    { class: "banner warn", role: "status", "data-backend": page.backend },
    h("strong", {}, "Search is running on the PostgreSQL fallback. "),
    "Elasticsearch is configured but not answering, so these results come from PostgreSQL: complete and current, possibly slower. ",
    "Nothing to do on your side; operators can check the search backend (a4c-controlplane search check).",
  );
}

// exact: false when the API counted only up to a limit (total_exact), so total is a lower bound.
export function summaryText({ total, exact = true, canonical, shown, backend, fresh }) {
  const by = backend === "elasticsearch" ? "Elasticsearch" : "PostgreSQL";
  const count = exact ? total.toLocaleString() : `More than ${total.toLocaleString()}`;
  return `${count} ${total === 1 && exact ? "job matches" : "jobs match"}` +
    `${canonical ? ` “${canonical}”` : ""}; showing ${shown.toLocaleString()}. Answered by ${by}.` +
    (fresh ? ` ${fresh} new since the search ran.` : "");
}

// --- filters ------------------------------------------------------------------------------

// The panel's sections. `onSearch(text)` runs a new search with edited text.
export function filterPanel({ facets, canonical, text, onSearch }) {
  const active = qt.filters(canonical);
  const chip = (key, value, count, pressed) => {
    const button = h(
      "button",
      {
        type: "button", class: "chip", "aria-pressed": String(pressed), dataset: { key, value },
        "aria-label": `${pressed ? "Remove" : "Add"} filter ${key} ${value}${count === null ? "" : `, ${count} jobs`}`,
      },
      h("span", {}, value.replaceAll("_", " ")),
      count === null ? null : h("span", { class: "count" }, count.toLocaleString()),
    );
    button.addEventListener("click", () => onSearch(qt.toggle(text, key, value)));
    return h("li", {}, button);
  };
  const groups = FACETS.map(([key, title]) => {
    const shown = new Map((facets?.[key] ?? []).map((b) => [b.value, b.count]));
    for (const value of active[key] ?? []) if (!shown.has(value)) shown.set(value, 0);
    const items = [...shown].map(([value, count]) => chip(key, value, count, (active[key] ?? []).includes(value)));
    return h(
      "section",
      { class: "facet", "aria-labelledby": `facet-${key}` },
      h("h2", { id: `facet-${key}` }, title),
      items.length ? h("ul", { class: "chips" }, items) : h("p", { class: "muted" }, "none"),
    );
  });
  // The PostgreSQL fallback may count only the newest matches (facets.complete: false).
  const partial = facets?.complete === false ? h("p", { class: "help" }, "Counts cover the newest matching jobs only.") : null;
  return [partial, timeSection(text, onSearch), ...groups, imageSection(active.image ?? [], chip, text, onSearch)];
}

function timeSection(text, onSearch) {
  const current = qt.since(text);
  const ranged = qt.hasTimeRange(text);
  return h(
    "section",
    { class: "facet", "aria-labelledby": "facet-time" },
    h("h2", { id: "facet-time" }, "Time range"),
    h(
      "ul",
      { class: "chips" },
      SPANS.map(([span, title]) => {
        const pressed = span === null ? !ranged : current === span;
        const button = h("button", { type: "button", class: "chip", "aria-pressed": String(pressed), dataset: { span: span ?? "any" } }, title);
        button.addEventListener("click", () => onSearch(qt.withSince(text, span)));
        return h("li", {}, button);
      }),
    ),
    ranged && !current ? h("p", { class: "help" }, "A custom range is set in the search box.") : null,
  );
}

// The API has no image facet: a name field adds the filter, chips remove it.
function imageSection(images, chip, text, onSearch) {
  const input = h("input", { id: "image-filter", type: "text", name: "image", autocomplete: "off", "aria-describedby": "image-help" });
  const form = h(
    "form",
    { class: "inline" },
    h("label", { for: "image-filter" }, "Filter by image name"),
    h("div", { class: "search-row" }, input, h("button", { type: "submit" }, "Add")),
    h("p", { id: "image-help", class: "help" }, "The API gives no per-image counts."),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (value) onSearch(qt.toggle(text, "image", value));
  });
  return h(
    "section",
    { class: "facet", "aria-labelledby": "facet-image" },
    h("h2", { id: "facet-image" }, "Image"),
    images.length ? h("ul", { class: "chips" }, images.map((v) => chip("image", v, null, true))) : null,
    form,
  );
}

// --- chart ------------------------------------------------------------------------------------

// The histogram figure's children; byTime: Map(bucket start -> {status: count}) or null.
export function chartParts(facets, byTime) {
  const created = facets?.created;
  if (!created) return [];
  const series = {
    interval: created.interval,
    buckets: created.buckets.map((b) => ({ start: b.start, total: b.count, byStatus: byTime ? byTime.get(b.start) ?? {} : null })),
  };
  const present = charts.STATUS_ORDER.filter((s) => (facets.status ?? []).some((b) => b.value === s));
  return [
    h(
      "figcaption", {}, `Jobs created per ${created.interval}`, byTime ? ", by status" : " (loading the split by status…)",
      facets.complete === false ? "; the newest matching jobs only" : "",
    ),
    charts.histogram(series),
    byTime ? charts.legend(present) : null,
  ];
}
