// One job: its status timeline (queued → dispatched → running → final), why
// it went where it went, its error, and its log tail, live while it runs:
// each read after the first is a blocking read (?index=&wait=, docs/decisions/0012-blocking-reads.md)
// that the API answers as soon as the job changes; it polls only while the API does not answer.

import * as api from "../api.js";
import { badge, clear, duration, errorBox, h, loading, timeEl } from "../dom.js";
import * as schema from "../schema.js";

// Which statuses still change and which are final: the API's (schema.jobSyntax()), set on the first load.
let LIVE = new Set();
let FINAL = new Set();

// While the API does not answer (a restart), or cannot block just then, ask again this often.
function pollMs() {
  return Number(sessionStorage.getItem("a4c.pollMs")) || 2000;
}

// The longest one blocking read waits for the job to change (the API cuts it to its watch.max_wait).
const WAIT = "60s";

export function mount(main, { me }, route) {
  let timer = null;
  let stopped = false;
  let index = 0; // the version shown; the next read blocks until the job's moves past it
  let reading = null;
  const id = route.id;
  document.title = `Job ${id.slice(0, 8)} · A4C dashboard`;
  // Back to the search the user came from (jobs.js remembers it for this tab).
  const backHref = sessionStorage.getItem("a4c.lastSearch") || "#/jobs";
  const backLink = () => h("p", {}, h("a", { href: backHref }, "← Back to the job search"));
  clear(main, backLink(), loading("Loading the job…"));

  async function load() {
    const began = Date.now();
    reading = new AbortController();
    try {
      const params = index ? { index, wait: WAIT } : undefined;
      const [job, syntax] = await Promise.all([
        api.get(`/v1/jobs/${encodeURIComponent(id)}`, params, { signal: reading.signal }),
        schema.jobSyntax(),
      ]);
      LIVE = new Set(syntax.live);
      FINAL = new Set(syntax.final);
      if (stopped) return;
      const changed = job.version !== index;
      index = job.version;
      if (changed) render(job);
      // Unchanged and early: the API could not block (it is restarting, or lost its change feed); wait as a poll would.
      const early = !changed && Date.now() - began < 1000;
      if (LIVE.has(job.status)) timer = setTimeout(load, early ? pollMs() : 0);
    } catch (err) {
      if (stopped) return;
      if (index && (err.status === 0 || err.status === 429 || err.status >= 500)) {
        // The job is on screen and the API is away or busy: keep it, and poll until it answers; then reads block again.
        timer = setTimeout(load, pollMs());
        return;
      }
      clear(main, backLink(), errorBox(api.explain(err), () => load()));
    }
  }

  function render(job) {
    const scroller = main.querySelector(".log");
    const atEnd = !scroller || scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - 4;
    clear(
      main,
      backLink(),
      h("h1", {}, `Job `, h("code", {}, job.id)),
      h(
        "p",
        { class: "lede" },
        badge(job.status), " ", job.kind.replaceAll("_", " "),
        job.user_name ? ` by ${job.user_name}` : "", ` · source ${job.source} · attempt${job.attempts === 1 ? "" : "s"}: ${job.attempts}`,
        LIVE.has(job.status) ? h("span", { class: "muted" }, " · updating live") : null,
      ),
      h("section", { "aria-labelledby": "timeline-title" }, h("h2", { id: "timeline-title" }, "Timeline"), timeline(job)),
      h("section", { "aria-labelledby": "where-title" }, h("h2", { id: "where-title" }, "Where and why"), where(job)),
      h(
        "section",
        { "aria-labelledby": "error-title" },
        h("h2", { id: "error-title" }, "Error"),
        job.error ? h("pre", { class: "error-detail", tabindex: "0" }, job.error) : h("p", { class: "muted" }, job.status === "failed" ? "The job failed without an error text." : "No error."),
      ),
      h(
        "section",
        { "aria-labelledby": "log-title" },
        h("h2", { id: "log-title" }, "Log tail", LIVE.has(job.status) ? h("span", { class: "muted" }, " (live)") : null),
        job.log_tail
          ? h("pre", { class: "log", tabindex: "0", "aria-label": "Log tail", "aria-live": LIVE.has(job.status) ? "polite" : "off" }, job.log_tail)
          : h("p", { class: "muted" }, LIVE.has(job.status) ? "No output yet; it appears here as the agent reports it." : "This job wrote no log."),
      ),
      Object.keys(job.result ?? {}).length
        ? h("section", { "aria-labelledby": "result-title" }, h("h2", { id: "result-title" }, "Result"), h("pre", { class: "result" }, JSON.stringify(job.result, null, 2)))
        : null,
    );
    const log = main.querySelector(".log");
    if (log && atEnd) log.scrollTop = log.scrollHeight;
  }

  function timeline(job) {
    const final = FINAL.has(job.status) ? job.status : "finished";
    const steps = [
      ["queued", "Queued", job.created_at, job.status === "pending" ? `waiting: ${job.reason}` : null],
      ["dispatched", "Dispatched to the agent", job.dispatched_at, null],
      ["running", "Running", job.started_at, null],
      [final, FINAL.has(job.status) ? `Finished: ${job.status}` : "Finished", job.finished_at, null],
    ];
    const reached = steps.map(([, , at]) => Boolean(at));
    return h(
      "ol",
      { class: "timeline" },
      steps.map(([key, title, at, note], i) => {
        const previous = steps.slice(0, i).reverse().find(([, , t]) => t);
        const gap = at && previous ? ` (+${duration((Date.parse(at) - Date.parse(previous[2])) / 1000)})` : "";
        return h(
          "li",
          { class: `step ${reached[i] ? "done" : "todo"} step-${key}`, dataset: { step: key }, "aria-current": i === reached.lastIndexOf(true) ? "step" : null },
          h("span", { class: "step-title" }, title),
          " ",
          at ? [timeEl(at), h("span", { class: "muted" }, gap)] : h("span", { class: "muted" }, "not yet"),
          note ? h("span", { class: "note" }, ` — ${note}`) : null,
        );
      }),
    );
  }

  function where(job) {
    const rows = [];
    const hostLink = job.host_id && me.role === "admin"
      ? h("a", { href: `#/hosts/${job.host_id}` }, job.host_name ?? job.host_id)
      : job.host_name
        ? h("a", { href: `#/jobs?${new URLSearchParams({ query: `host:${job.host_name}` })}` }, job.host_name)
        : null;
    if (job.host_id || job.host_name) rows.push(["Host", hostLink]);
    if (job.workspace_id) rows.push(["Workspace", h("a", { href: `#/workspaces/${job.workspace_id}` }, job.workspace_name ?? job.workspace_id)]);
    if (job.image_name || job.image_id) {
      rows.push(["Image", h("a", { href: `#/jobs?${new URLSearchParams({ query: `image:${job.image_name}` })}`, title: "Jobs of this image" }, job.image_name ?? job.image_id)]);
    }
    rows.push(["Placement reason", job.reason || h("span", { class: "muted" }, "none recorded")]);
    const placement = job.placement;
    if (placement) rows.push(["Placement record", placementSummary(placement)]);
    rows.push(["Created", timeEl(job.created_at)], ["Updated", timeEl(job.updated_at)]);
    return h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  }

  // The record of controlplane/domain/placement.py (Placement.to_record).
  function placementSummary(p) {
    const lines = [];
    lines.push(p.host_name ? `Placed on ${p.host_name}: ${p.reason}` : `Not placed: ${p.reason}`);
    // A chosen host may have been found without judging the whole fleet: the counts then cover the hosts
    // examined, the least used (docs/decisions/0014-placement-examines-the-least-used-hosts.md). Older records lack "examined".
    const partial = p.examined && !p.examined.whole_fleet;
    lines.push(partial
      ? `${p.eligible_count ?? 0} eligible of ${p.examined.hosts} host(s) examined, the least used; the others were fuller`
      : `${p.eligible_count ?? 0} eligible host(s)`);
    const counts = Object.entries(p.rejected_counts ?? {});
    if (counts.length) {
      lines.push(`rejected${partial ? " among those examined" : ""}: ${counts.map(([code, n]) => `${n} ${code.replaceAll("_", " ")}`).join(", ")}`);
    }
    return [
      h("ul", { class: "plain" }, lines.map((l) => h("li", {}, l))),
      (p.rejected ?? []).length
        ? h("details", {}, h("summary", {}, "Why the other hosts were not chosen"),
          h("ul", { class: "plain" }, p.rejected.map((r) => h("li", {}, h("strong", {}, r.host_name), `: ${r.message}`))))
        : null,
    ];
  }

  load();
  return () => {
    stopped = true;
    clearTimeout(timer);
    reading?.abort();
  };
}
