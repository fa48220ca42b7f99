// Images: the user's own and the shared ones (an admin sees all), each with
// its latest builds and its cron schedules. The owner (or an admin) can build
// an image, delete it, and switch its schedules off, on or away, each behind a
// confirmation when it destroys something; the API's refusals (an image still
// used by workspaces) are shown as it words them.

import * as api from "../api.js";
import { announce, badge, clear, confirmDialog, empty, errorBox, h, loading, redrawKeepingFocus, shortId, timeEl } from "../dom.js";

const PAGE = 100;
const BUILDS_SHOWN = 3;
const RECENT_BUILDS = 500;
const AT_ONCE = 4;

// fn over items, AT_ONCE requests in flight at most; results in the items' order.
async function inBatches(items, fn) {
  const out = [];
  for (let n = 0; n < items.length; n += AT_ONCE) out.push(...(await Promise.all(items.slice(n, n + AT_ONCE).map(fn))));
  return out;
}

function pollMs() {
  return Number(sessionStorage.getItem("a4c.pollMs")) || 5000;
}

export function mount(main, { me }) {
  const state = { items: [], builds: new Map(), schedules: new Map(), users: new Map(), timer: null, stopped: false };
  const admin = me.role === "admin";
  document.title = "Images · A4C dashboard";
  const notice = h("div", { class: "notice-slot", role: "status", "aria-live": "polite" });
  const list = h("div", { class: "table-slot" }, loading("Loading images…"));
  clear(
    main,
    h("h1", {}, admin ? "Images (all users)" : "Images"),
    h("p", { class: "help" }, "Your images and the shared ones. Register, update and schedule them with ", h("code", {}, "a4c images"), "."),
    notice,
    list,
  );

  async function names() {
    if (!admin) return;
    const users = await api.get("/v1/users", { limit: 500 }).catch(() => ({ items: [] }));
    state.users = new Map(users.items.map((x) => [x.id, x.name]));
  }

  async function refresh({ quiet = false } = {}) {
    clearTimeout(state.timer);
    try {
      // One request for the builds (the newest ones, grouped by image) and a
      // few at a time for the schedules, so a long list stays well inside the
      // per-token rate limit (rate_limit.per_token_burst).
      const [page, recent] = await Promise.all([
        api.get("/v1/images", { limit: PAGE }),
        api.get("/v1/jobs", { kind: "image_build", limit: RECENT_BUILDS }).catch(() => ({ items: [] })),
      ]);
      const schedules = await inBatches(page.items, (i) => api.get(`/v1/images/${i.id}/schedules`).catch(() => ({ items: [] })));
      if (state.stopped) return;
      const signature = JSON.stringify([page.items, recent.items, schedules]);
      if (signature !== state.signature || !quiet) {
        state.signature = signature;
        state.items = page.items;
        state.builds = new Map();
        for (const job of recent.items) {
          const shown = state.builds.get(job.image_id) ?? [];
          if (shown.length < BUILDS_SHOWN) state.builds.set(job.image_id, [...shown, job]);
        }
        page.items.forEach((i, n) => state.schedules.set(i.id, schedules[n].items));
        redrawKeepingFocus(list, draw);
      }
    } catch (err) {
      if (state.stopped) return;
      if (!quiet || !state.items.length) clear(list, errorBox(`The images could not be loaded. ${api.explain(err)}`, () => refresh()));
    }
    if (!state.stopped) state.timer = setTimeout(() => refresh({ quiet: true }), pollMs());
  }

  function draw() {
    if (!state.items.length) {
      clear(list, empty("There are no images yet.", "Register one: a4c images register NAME --dockerfile PATH"));
      return;
    }
    const headers = ["Name", "Owner", "Source", "Builds", "Schedules", "Actions"];
    clear(
      list,
      h(
        "table",
        { class: "images" },
        h("caption", { class: "visually-hidden" }, "Images, newest first, with their latest builds and schedules"),
        h("thead", {}, h("tr", {}, headers.map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, state.items.map(row)),
      ),
    );
  }

  const mine = (i) => admin || i.owner_id === me.id;

  function owner(i) {
    const who = i.owner_id === me.id ? "you" : (state.users.get(i.owner_id) ?? h("code", { title: i.owner_id }, shortId(i.owner_id)));
    return [who, i.shared ? h("div", {}, h("span", { class: "badge flag-shared" }, "shared")) : h("div", { class: "muted" }, "private")];
  }

  function source(i) {
    const what = i.dockerfile
      ? h("details", {}, h("summary", {}, "Dockerfile"), h("pre", { class: "dockerfile" }, i.dockerfile))
      : h("div", {}, h("code", { class: "wrap" }, i.git_url), h("div", { class: "muted" }, `ref ${i.git_ref} · path ${i.git_path}`));
    const args = Object.entries(i.build_args);
    return [what, args.length ? h("div", { class: "muted" }, `build args: ${args.map(([k, v]) => `${k}=${v}`).join(" ")}`) : null, h("div", {}, h("code", { class: "wrap muted" }, i.tag))];
  }

  function builds(i) {
    const done = state.builds.get(i.id) ?? [];
    if (!done.length) return i.latest_built_at ? h("span", { class: "muted" }, "built ", timeEl(i.latest_built_at, { compact: true })) : h("span", { class: "muted" }, "never built");
    return h(
      "ul",
      { class: "plain builds" },
      done.map((j) => h("li", {}, badge(j.status), " ", h("a", { href: `#/jobs/${j.id}` }, shortId(j.id)), " ", h("span", { class: "muted" }, j.host_name ?? ""), " ", timeEl(j.created_at, { compact: true }))),
    );
  }

  function schedules(i) {
    const all = state.schedules.get(i.id) ?? [];
    if (!all.length) return h("span", { class: "muted" }, "none");
    return h(
      "ul",
      { class: "plain schedules" },
      all.map((s) =>
        h(
          "li",
          { dataset: { scheduleId: s.id } },
          h("code", {}, s.cron), ` ${s.timezone} `,
          s.enabled ? h("span", { class: "muted" }, s.next_run_at ? ["next ", timeEl(s.next_run_at, { compact: true })] : "") : h("span", { class: "badge flag-off" }, "off"),
          mine(i)
            ? h(
                "span",
                { class: "row-actions" },
                s.enabled
                  ? button(`Disable schedule ${s.cron} of ${i.name}`, "Disable", "small quiet", () => change(i, s, false))
                  : button(`Enable schedule ${s.cron} of ${i.name}`, "Enable", "small quiet", () => change(i, s, true)),
                button(`Delete schedule ${s.cron} of ${i.name}`, "Delete", "small danger", () => dropSchedule(i, s)),
              )
            : null,
        ),
      ),
    );
  }

  function row(i) {
    return h(
      "tr",
      { dataset: { imageId: i.id, rowKey: i.id } },
      h("th", { scope: "row" }, i.name),
      h("td", {}, owner(i)),
      h("td", { class: "source" }, source(i)),
      h("td", {}, builds(i)),
      h("td", {}, schedules(i)),
      h(
        "td",
        { class: "actions" },
        mine(i)
          ? [button(`Build ${i.name}`, "Build", "small", () => build(i)), button(`Delete ${i.name}`, "Delete", "small danger", () => drop(i))]
          : h("span", { class: "muted" }, "not yours"),
      ),
    );
  }

  function button(label, text, cls, act) {
    const el = h("button", { type: "button", class: cls, "aria-label": label }, text);
    el.addEventListener("click", async () => {
      el.disabled = true;
      try {
        await act();
      } catch (err) {
        clear(notice, errorBox(`${label} failed. ${api.explain(err)}`));
      } finally {
        el.disabled = false;
      }
    });
    return el;
  }

  function say(text, link) {
    clear(notice, h("p", { class: "notice ok" }, text, link ? [": ", link] : null, "."));
    announce(`${text}.`);
  }

  async function build(i) {
    const done = await api.post(`/v1/images/${i.id}/builds`, {});
    const job = done.jobs[0];
    say(`Build of ${i.name} requested`, job ? h("a", { href: `#/jobs/${job.id}` }, `job ${shortId(job.id)} (${job.status})`) : null);
    await refresh();
  }

  async function drop(i) {
    if (!(await confirmDialog(`Delete image ${i.name}?`, "Its schedules are deleted with it; its jobs stay. Workspaces using it must be deleted first.", "Delete"))) return;
    await api.del(`/v1/images/${i.id}`);
    say(`Image ${i.name} deleted`);
    await refresh();
  }

  async function change(i, s, enabled) {
    await api.patch(`/v1/images/${i.id}/schedules/${s.id}`, { enabled });
    say(`Schedule ${s.cron} of ${i.name} switched ${enabled ? "on" : "off"}`);
    await refresh();
  }

  async function dropSchedule(i, s) {
    if (!(await confirmDialog(`Delete schedule ${s.cron} of ${i.name}?`, "Builds it already started are not affected.", "Delete"))) return;
    await api.del(`/v1/images/${i.id}/schedules/${s.id}`);
    say(`Schedule ${s.cron} of ${i.name} deleted`);
    await refresh();
  }

  names().then(() => refresh());
  return () => {
    state.stopped = true;
    clearTimeout(state.timer);
  };
}
