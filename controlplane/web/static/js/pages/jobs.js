// The jobs page: one search box (the API's key:value syntax plus free text),
// filter chips with facet counts, a histogram by status, and the result table
// with "load more" and live updates.
//
// Requests, all GET /v1/jobs/search?query=<the box's text>:
//   results   limit=PAGE, facets=false             -> the table (first, fastest)
//   facets    limit=1                               -> counts and the histogram
//   breakdown limit=1, interval=…, one per status   -> the histogram's stacks
//   poll      limit=POLL, sort:-updated_at, every POLL_MS -> new and changed rows
// The URL (#/jobs?query=…) carries the text, so a search can be shared.

import * as api from "../api.js";
import { announce, clear, empty, errorBox, h, loading } from "../dom.js";
import * as qt from "../querytext.js";
import * as schema from "../schema.js";
import * as view from "./jobs-view.js";

export const PAGE = 50;
const POLL = 100;

function pollMs() {
  // A test or a demo may poll faster: sessionStorage a4c.pollMs.
  return Number(sessionStorage.getItem("a4c.pollMs")) || 5000;
}

export function mount(main, _ctx, route) {
  const state = {
    text: route.params.get("query") ?? "",
    canonical: "",
    rows: new Map(), // id -> job
    order: [], // ids in display order
    cursor: null,
    sort: { field: "created_at", descending: true },
    total: null,
    facets: null,
    breakdownFor: null,
    regex: null,
    searching: null, // AbortController of the current search
    timer: null,
    stopped: false,
    fresh: 0,
    pollCost: 0, // ms the last poll took
  };
  document.title = "Jobs · A4C dashboard";

  // --- the static frame -----------------------------------------------------
  const input = h("input", {
    id: "search", type: "search", name: "query", value: state.text, autocomplete: "off", spellcheck: "false",
    "aria-describedby": "search-help search-error", placeholder: 'status:failed kind:image_build "no space left"',
  });
  const searchError = h("p", { id: "search-error", class: "field-error", role: "alert" });
  const filterKeys = h("span", { class: "filter-keys" }); // the API's keys, once its contract is read
  const form = h(
    "form",
    { role: "search", class: "search", "aria-label": "Job search" },
    h("label", { for: "search" }, "Search jobs"),
    h("div", { class: "search-row" }, input, h("button", { type: "submit" }, "Search")),
    h(
      "p",
      { id: "search-help", class: "help" },
      "Filters: ",
      filterKeys,
      ", time: ", h("code", {}, "since:2h"), " ", h("code", {}, "created>=2026-01-31"),
      ", exclude with ", h("code", {}, "-host:h1"),
      "; anything else searches error and log text (quote phrases).",
    ),
    searchError,
  );
  const banner = h("div", { class: "banner-slot" });
  const filters = h("aside", { class: "filters", "aria-label": "Filters" });
  const summary = h("p", { class: "summary", role: "status", "aria-live": "polite" });
  const chart = h("figure", { class: "chart" });
  const table = h("div", { class: "table-slot" });
  const more = h("div", { class: "more-slot" });
  const results = h("section", { class: "results", "aria-label": "Results" }, summary, chart, table, more);
  clear(
    main,
    h("h1", {}, "Jobs"),
    form,
    banner,
    h("div", { class: "jobs-layout" }, filters, results),
  );

  // Text typed into the box but not yet submitted belongs to the user: a
  // search the page starts on its own (the first one, once the API's contract
  // has loaded, or a re-run) must not wipe it.
  let typed = false;
  input.addEventListener("input", () => {
    typed = true;
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    typed = false;
    search(input.value.trim(), { push: true });
  });

  // --- searching --------------------------------------------------------------
  function params(text, extra) {
    return { query: text, ...extra };
  }

  // byPage: started by the page itself rather than by the user.
  async function search(text, { push = false, byPage = false } = {}) {
    state.searching?.abort();
    const controller = new AbortController();
    state.searching = controller;
    state.text = text;
    if (!(byPage && typed)) {
      input.value = text;
      typed = false;
    }
    const hash = `#/jobs?${new URLSearchParams({ query: text })}`;
    if (location.hash !== hash) history[push ? "pushState" : "replaceState"](null, "", hash);
    sessionStorage.setItem("a4c.lastSearch", hash);
    stopPolling();
    results.removeAttribute("data-settled");
    input.setAttribute("aria-busy", "true");
    table.setAttribute("aria-busy", "true");
    performance.clearMarks("a4c-search");
    performance.mark("a4c-search");
    // The rows first, alone: on a busy database the counts (facets) are the
    // slow part, and the user reads the rows while they come.
    let page;
    try {
      page = await api.get("/v1/jobs/search", params(text, { limit: PAGE, facets: false }), { signal: controller.signal });
    } catch (err) {
      if (err.name === "AbortError") return;
      input.removeAttribute("aria-busy");
      table.removeAttribute("aria-busy");
      failed(err, () => search(text));
      return;
    }
    if (controller.signal.aborted) return;
    performance.clearMarks("a4c-answered");
    performance.mark("a4c-answered");
    searchError.textContent = "";
    input.removeAttribute("aria-invalid");
    input.removeAttribute("aria-busy");
    table.removeAttribute("aria-busy");
    state.canonical = page.query;
    state.sort = view.sortOf(page.query);
    state.regex = qt.matcher(qt.terms(page.query));
    state.rows = new Map();
    state.order = [];
    state.fresh = 0;
    state.total = page.total;
    state.exact = page.total_exact !== false;
    add(page.jobs);
    state.cursor = page.next_cursor;
    showBanner(page);
    renderTable();
    renderSummary(page);
    table.dataset.query = text;
    // "Results rendered": the next frame after the table is in the document
    // (the benchmark in bench/dashboard reads this measure).
    performance.measure("a4c-drawn", "a4c-answered");
    requestAnimationFrame(() => setTimeout(() => performance.measure("a4c-results", "a4c-search"), 0));
    try {
      const withFacets = await api.get("/v1/jobs/search", params(text, { limit: 1 }), { signal: controller.signal });
      if (controller.signal.aborted) return;
      state.facets = withFacets.facets;
      state.breakdownFor = null;
      renderFacets();
      renderChart();
      await breakdown(controller.signal);
    } catch (err) {
      if (err.name === "AbortError") return;
      clear(chart, errorBox(`The counts could not be loaded: ${api.explain(err)}`, () => search(text)));
    }
    if (controller.signal.aborted) return;
    results.dataset.settled = "true";
    startPolling();
  }

  function failed(err, retry) {
    if (err instanceof api.ApiError && err.status === 422) {
      const reasons = err.fields.map((f) => (f.path === "query" ? f.reason : `${f.path}: ${f.reason}`));
      searchError.textContent = `This search cannot run: ${reasons.join("; ") || err.message}`;
      input.setAttribute("aria-invalid", "true");
      input.focus();
      clear(table, empty("No results for an invalid search.", "Correct the search above (the message says where), then press Enter."));
      clear(more);
      clear(summary);
      clear(chart);
      return;
    }
    clear(table, errorBox(`The search failed. ${api.explain(err)}`, retry));
    clear(more);
  }

  function compare(a, b) {
    return view.comparator(state.sort)(a, b);
  }

  function add(jobs) {
    for (const job of jobs) {
      if (state.rows.has(job.id)) continue;
      state.rows.set(job.id, job);
      state.order.push(job.id);
    }
  }

  async function loadMore(button) {
    if (!state.cursor) return;
    button.disabled = true;
    button.textContent = "Loading…";
    const signal = state.searching?.signal;
    try {
      const page = await api.get("/v1/jobs/search", params(state.text, { limit: PAGE, facets: false, cursor: state.cursor }), { signal });
      const before = state.order.length;
      add(page.jobs);
      state.cursor = page.next_cursor;
      const tbody = table.querySelector("tbody");
      for (const id of state.order.slice(before)) tbody.append(row(state.rows.get(id)));
      renderMore();
      announce(`${state.order.length - before} more jobs loaded; ${state.order.length} shown.`);
      more.querySelector("button")?.focus();
    } catch (err) {
      if (err.name === "AbortError") return;
      clear(more, errorBox(`More jobs could not be loaded. ${api.explain(err)}`, () => renderMore()));
    }
  }

  // --- the per-status histogram -----------------------------------------------
  // The API's histogram counts all matching jobs; the stacks come from one
  // request per status that occurs (at the same interval).
  async function breakdown(signal) {
    const statuses = (state.facets?.status ?? []).map((b) => b.value);
    const interval = state.facets?.created.interval;
    const key = `${state.text}|${interval}|${state.total}`;
    if (state.breakdownFor === key) return;
    if (!statuses.length) {
      steady(() => renderChart());
      return;
    }
    try {
      // Two at a time: these are full counts, and the database has other users.
      const answers = [];
      for (let i = 0; i < statuses.length; i += 2) {
        answers.push(...(await Promise.all(
          statuses.slice(i, i + 2).map((s) => api.get("/v1/jobs/search", params(qt.only(state.text, "status", s), { limit: 1, interval }), { signal })),
        )));
      }
      if (signal.aborted) return;
      const byTime = new Map();
      answers.forEach((answer, i) => {
        for (const b of answer.facets.created.buckets) {
          const entry = byTime.get(b.start) ?? {};
          entry[statuses[i]] = b.count;
          byTime.set(b.start, entry);
        }
      });
      state.breakdownFor = key;
      steady(() => renderChart(byTime));
    } catch (err) {
      if (err.name !== "AbortError") steady(() => renderChart()); // the totals stay; stacks are a refinement
    }
  }

  // --- live updates ------------------------------------------------------------
  function startPolling() {
    stopPolling();
    // Never poll harder than the answers allow: a busy server (slow polls) is asked less often.
    if (!state.stopped) state.timer = setTimeout(poll, Math.max(pollMs(), 4 * state.pollCost));
  }

  function stopPolling() {
    clearTimeout(state.timer);
    state.timer = null;
  }

  async function poll() {
    const signal = state.searching?.signal;
    const started = performance.now();
    try {
      const text = `${qt.without(state.text, ["sort"])} sort:-updated_at`.trim();
      const changed = await api.get("/v1/jobs/search", params(text, { limit: POLL, facets: false }), { signal });
      if (signal?.aborted || state.stopped) return;
      state.pollCost = performance.now() - started;
      steady(() => {
        merge(changed.jobs);
        showBanner(changed);
      });
      if (changed.total !== state.total) {
        state.total = changed.total;
        state.exact = changed.total_exact !== false;
        const withFacets = await api.get("/v1/jobs/search", params(state.text, { limit: 1 }), { signal });
        if (signal?.aborted || state.stopped) return;
        state.facets = withFacets.facets;
        state.total = withFacets.total;
        steady(renderFacets);
        // The chart keeps its stacks until the new split arrives (no flicker, no jump).
        await breakdown(signal);
      }
      steady(() => renderSummary(changed));
    } catch (err) {
      if (err.name === "AbortError") return;
      summary.textContent = `Live updates paused: ${api.explain(err)} Retrying…`;
    }
    startPolling();
  }

  // New rows go where the sort puts them (if that is within what is loaded);
  // changed rows are redrawn in place. The row the user is looking at stays
  // where it is on screen.
  function merge(jobs) {
    const tbody = table.querySelector("tbody");
    if (!tbody) {
      if (jobs.length && !state.order.length) search(state.text, { byPage: true });
      return;
    }
    const last = state.order.length ? state.rows.get(state.order[state.order.length - 1]) : null;
    let added = 0;
    const ordered = [...jobs].sort(compare);
    for (const job of ordered) {
      const known = state.rows.get(job.id);
      if (known) {
        if (job.version > known.version) {
          state.rows.set(job.id, job);
          const old = tbody.querySelector(`tr[data-job-id="${job.id}"]`);
          const fresh = row(job);
          fresh.classList.add("changed");
          old?.replaceWith(fresh);
        }
        continue;
      }
      if (state.cursor && last && compare(job, last) > 0) continue; // belongs to a page not loaded yet
      let index = state.order.findIndex((id) => compare(job, state.rows.get(id)) < 0);
      if (index < 0) index = state.order.length;
      state.rows.set(job.id, job);
      state.order.splice(index, 0, job.id);
      const fresh = row(job);
      fresh.classList.add("new");
      const before = tbody.children[index];
      if (before) before.before(fresh);
      else tbody.append(fresh);
      added += 1;
    }
    if (added) {
      state.fresh += added;
      announce(`${added} new ${added === 1 ? "job" : "jobs"} matching this search.`);
    }
  }

  // Live changes must not move what the user is reading: the first row on
  // screen is kept where it was, whatever changed above it.
  function steady(update) {
    const tbody = table.querySelector("tbody");
    const anchor = tbody ? visibleAnchor(tbody) : null;
    update();
    if (anchor?.row.isConnected) {
      const delta = anchor.row.getBoundingClientRect().top - anchor.top;
      if (delta) window.scrollBy(0, delta);
    }
  }

  // The first row fully on screen, when the user has scrolled into the table;
  // null at the top of the page (there new rows should simply appear).
  function visibleAnchor(tbody) {
    if (window.scrollY <= 0 || tbody.getBoundingClientRect().top >= 0) return null;
    for (const tr of tbody.children) {
      const top = tr.getBoundingClientRect().top;
      if (top >= 0) return { row: tr, top };
    }
    return null;
  }

  // --- rendering ------------------------------------------------------------------
  function showBanner(page) {
    clear(banner, view.fallbackBanner(page));
    banner.dataset.backend = page.backend;
  }

  function renderSummary(page) {
    summary.textContent = view.summaryText({
      total: state.total ?? page.total, exact: state.exact, canonical: state.canonical, shown: state.order.length, backend: page.backend, fresh: state.fresh,
    });
  }

  function renderTable() {
    if (!state.order.length) {
      const hint = state.text
        ? "Nothing matches this search. Remove a filter or a word, or widen the time range."
        : "There are no jobs yet. Jobs appear here when workspaces are created, started or stopped, or images are built.";
      clear(table, empty(state.text ? "No jobs match." : "No jobs yet.", hint));
      clear(more);
      return;
    }
    clear(table, view.jobsTable(state.order.map((id) => state.rows.get(id)), state.regex, state.sort));
    renderMore();
  }

  function renderMore() {
    if (!state.cursor) {
      clear(more, state.order.length ? h("p", { class: "muted" }, `All ${state.order.length.toLocaleString()} matching jobs are shown.`) : null);
      return;
    }
    const button = h("button", { type: "button", class: "load-more" }, `Load ${PAGE} more`);
    button.addEventListener("click", () => loadMore(button));
    clear(more, button);
  }

  function row(job) {
    return view.jobRow(job, state.regex);
  }

  function renderFacets() {
    const onSearch = (text) => search(text, { push: true });
    // A chip pressed from the keyboard keeps the focus across the redraw.
    const focused = filters.contains(document.activeElement) ? document.activeElement : null;
    const again = focused?.dataset.span ? `button[data-span="${focused.dataset.span}"]`
      : focused?.dataset.key ? `button[data-key="${focused.dataset.key}"][data-value="${CSS.escape(focused.dataset.value)}"]` : null;
    clear(filters, view.filterPanel({ facets: state.facets, canonical: state.canonical, text: state.text, onSearch }));
    if (again) (filters.querySelector(again) ?? filters.querySelector("button"))?.focus();
  }

  function renderChart(byTime = null) {
    clear(chart, view.chartParts(state.facets, byTime));
    chart.dataset.stacked = byTime ? "true" : "false";
  }

  // --- start ----------------------------------------------------------------------
  clear(table, loading("Searching…"));
  function start() {
    schema.jobSyntax().then(
      (syntax) => {
        if (state.stopped) return;
        qt.configure(syntax);
        clear(filterKeys, syntax.filterKeys.map((k, i) => [i ? " " : "", h("code", {}, `${k}:`)]));
        search(state.text, { byPage: true });
      },
      (err) => {
        if (!state.stopped) clear(table, errorBox(`The search cannot start. ${api.explain(err)}`, start));
      },
    );
  }
  start();
  return () => {
    state.stopped = true;
    stopPolling();
    state.searching?.abort();
  };
}
