// Hosts (admins): disk use against the high watermark, CPU and memory
// allocated against capacity, liveness, and cordon/drain. Hosts that are down
// or under disk pressure stand out and are counted at the top.
//
// Each agent reports its cleanup.high_watermark with its disk report; the
// line and the pressure mark use it. For agents too old to report one, the
// line is drawn where the person says (default: the agent's default, 85 %).

import * as api from "../api.js";
import * as charts from "../charts.js";
import { ago, badge, bytes, clear, confirmDialog, empty, errorBox, h, loading, redrawKeepingFocus, shortId } from "../dom.js";

const WATERMARK_KEY = "a4c.highWatermark";
export const DEFAULT_WATERMARK = 85;
const STALE_SECONDS = 60; // placement's default heartbeat_fresh

function pollMs() {
  return Number(sessionStorage.getItem("a4c.pollMs")) || 10000;
}

export function watermark() {
  const stored = Number(localStorage.getItem(WATERMARK_KEY));
  return stored > 0 && stored <= 100 ? stored : DEFAULT_WATERMARK;
}

// The host's own watermark when its agent reported one, else the page's.
function watermarkOf(host) {
  const reported = host.disk.high_watermark;
  return typeof reported === "number" && reported > 0 && reported <= 100 ? reported : watermark();
}

export function mount(main, { me }, route) {
  document.title = "Hosts · A4C dashboard";
  if (me.role !== "admin") {
    clear(main, h("h1", {}, "Hosts"), empty("Hosts are shown to admins only.", "Your workspaces page shows where each of your workspaces runs."));
    return () => {};
  }
  const state = { hosts: [], cursor: null, timer: null, stopped: false };
  const summary = h("p", { class: "summary", role: "status", "aria-live": "polite" });
  const notice = h("div", { class: "notice-slot", role: "status", "aria-live": "polite" });
  const list = h("div", { class: "table-slot" }, loading("Loading hosts…"));
  const detail = h("div", { class: "detail-slot" });
  const line = h("input", { id: "watermark", type: "number", min: 1, max: 100, step: 1, value: watermark(), "aria-describedby": "watermark-help" });
  line.addEventListener("change", () => {
    const value = Number(line.value);
    if (value > 0 && value <= 100) {
      localStorage.setItem(WATERMARK_KEY, String(value));
      render();
    }
  });
  clear(
    main,
    h("h1", {}, "Hosts"),
    h(
      "div",
      { class: "toolbar" },
      h("label", { for: "watermark" }, "High watermark line (%)"),
      line,
      h("p", { id: "watermark-help", class: "help" }, `Each host's line is its agent's cleanup.high_watermark; this value stands in for agents that do not report one (agent default ${DEFAULT_WATERMARK} %). Hosts at or above their line are marked as under disk pressure.`),
    ),
    summary,
    notice,
    detail,
    list,
  );

  async function refresh() {
    clearTimeout(state.timer);
    try {
      const items = [];
      let cursor = null;
      // Every host, a few pages at most (a fleet of thousands pages on).
      for (let i = 0; i < 20; i += 1) {
        const page = await api.get("/v1/hosts", { limit: 500, cursor });
        items.push(...page.items);
        cursor = page.next_cursor;
        if (!cursor) break;
      }
      if (state.stopped) return;
      state.hosts = items;
      render();
    } catch (err) {
      if (state.stopped) return;
      clear(list, errorBox(`The hosts could not be loaded. ${api.explain(err)}`, () => refresh()));
    }
    if (!state.stopped) state.timer = setTimeout(refresh, pollMs());
  }

  function pressure(host) {
    const { used_bytes: used, total_bytes: total } = host.disk;
    return Boolean(total && used !== null && (100 * used) / total >= watermarkOf(host));
  }

  function render() {
    redrawKeepingFocus(list, draw);
  }

  function draw() {
    const hosts = state.hosts;
    if (!hosts.length) {
      clear(summary);
      clear(list, empty("No hosts are enrolled yet.", "Start a node agent with an enrolment token (POST /v1/enrolment-tokens); it appears here after its first report."));
      return;
    }
    const down = hosts.filter((x) => x.status === "down").length;
    const pressed = hosts.filter(pressure).length;
    summary.textContent = `${hosts.length} host${hosts.length === 1 ? "" : "s"}: ${down} down, ${pressed} under disk pressure, ${hosts.filter((x) => x.cordoned).length} cordoned.`;
    summary.classList.toggle("alarm", down + pressed > 0);
    clear(
      list,
      h(
        "table",
        { class: "hosts" },
        h("caption", { class: "visually-hidden" }, "Hosts with disk, CPU and memory use"),
        h("thead", {}, h("tr", {}, ["Host", "Status", "Heartbeat", "Disk", "CPU allocated", "Memory allocated", "Workspaces", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, hosts.map(row)),
      ),
    );
    const selected = list.querySelector("tr.selected");
    if (selected && !state.scrolled) {
      selected.scrollIntoView({ block: "center" });
      state.scrolled = true;
    }
  }

  function row(host) {
    const isDown = host.status === "down";
    const hot = pressure(host);
    const classes = [isDown ? "down" : null, hot ? "pressure" : null, route.id === host.id ? "selected" : null].filter(Boolean).join(" ");
    const heartbeatAge = host.last_heartbeat_at ? (Date.now() - Date.parse(host.last_heartbeat_at)) / 1000 : null;
    const status = [badge(host.status, "host")];
    if (host.draining) status.push(" ", badge("draining", "flag"));
    else if (host.cordoned) status.push(" ", badge("cordoned", "flag"));
    if (isDown && host.down_since) status.push(h("div", { class: "reason" }, `down since ${new Date(host.down_since).toLocaleString()}`));
    return h(
      "tr",
      { class: classes || null, dataset: { hostId: host.id, rowKey: host.id, status: host.status, pressure: String(hot) } },
      h("th", { scope: "row" }, h("span", { class: "host-name" }, host.name), h("div", { class: "muted" }, h("code", { title: host.id }, shortId(host.id)), host.agent_version ? ` · agent ${host.agent_version}` : "")),
      h("td", {}, status),
      h(
        "td",
        { class: heartbeatAge === null || heartbeatAge > STALE_SECONDS ? "stale" : null },
        host.last_heartbeat_at ? h("time", { datetime: host.last_heartbeat_at, title: host.last_heartbeat_at }, ago(host.last_heartbeat_at)) : "never",
      ),
      h("td", { class: "disk" }, disk(host, hot)),
      h("td", {}, usage("CPU", host.allocated.cpus, host.capacity.cpus, (n) => `${round(n)}`, "CPUs")),
      h("td", {}, usage("Memory", host.allocated.memory_mb * 1048576, host.capacity.memory_mb * 1048576, bytes, "")),
      h("td", { class: "number" }, String(host.allocated.workspaces)),
      h("td", { class: "actions" }, actions(host)),
    );
  }

  function disk(host, hot) {
    const { used_bytes: used, total_bytes: total, reported_at: at } = host.disk;
    if (used === null || !total) return h("span", { class: "muted" }, "no disk report yet");
    const pct = (100 * used) / total;
    const text = `${bytes(used)} of ${bytes(total)} used (${pct.toFixed(1)} %)`;
    const mark = watermarkOf(host);
    const bar = charts.usageBar({ used, total, watermark: mark, name: `Disk of ${host.name}`, text });
    return [
      bar.element,
      h("div", { class: "bar-text" }, text),
      hot ? h("div", { class: "pressure-note" }, h("strong", {}, "Disk pressure"), ` — at or above the ${mark} % watermark`) : null,
      h("div", { class: "muted" }, `reported ${ago(at)}`),
      h("button", { type: "button", class: "link small", onclick: () => showDisk(host), "aria-label": `Disk details of ${host.name}` }, "Details"),
    ];
  }

  function usage(name, used, total, show, unit) {
    const text = `${show(used)} of ${show(total)}${unit ? ` ${unit}` : ""}`;
    const bar = charts.usageBar({ used, total, name, text, width: 140, height: 12 });
    return [bar.element, h("div", { class: "bar-text" }, text)];
  }

  function actions(host) {
    const out = [];
    if (host.cordoned) out.push(button(host, "uncordon", "Uncordon", `Uncordon ${host.name}?`, "It takes new workspaces again (a drain ends too)."));
    else out.push(button(host, "cordon", "Cordon", `Cordon ${host.name}?`, "It takes no new workspaces; those on it keep running."));
    if (!host.draining) out.push(button(host, "drain", "Drain", `Drain ${host.name}?`, "It is cordoned, and you see which workspaces still live on it."));
    return out;
  }

  function button(host, verb, label, question, consequence) {
    const b = h("button", { type: "button", class: "small", "aria-label": `${label} ${host.name}` }, label);
    b.addEventListener("click", async () => {
      if (!(await confirmDialog(question, consequence, label))) {
        b.focus();
        return;
      }
      b.disabled = true;
      try {
        const answer = await api.post(`/v1/hosts/${host.id}/${verb}`);
        if (verb === "drain") {
          const left = answer.remaining;
          clear(notice, h("div", { class: "notice ok" }, h("p", {}, `${host.name} is draining: ${left.length} workspace${left.length === 1 ? "" : "s"} still on it.`), left.length ? h("ul", {}, left.map((w) => h("li", {}, h("a", { href: `#/workspaces/${w.id}` }, w.name), ` (${w.observed_state})`))) : null));
        } else {
          clear(notice, h("p", { class: "notice ok" }, `${host.name}: ${label.toLowerCase()}ed.`));
        }
        await refresh();
      } catch (err) {
        b.disabled = false;
        clear(notice, errorBox(`${label} of ${host.name} failed. ${api.explain(err)}`));
      }
    });
    return b;
  }

  async function showDisk(host) {
    clear(detail, loading(`Loading the disk report of ${host.name}…`));
    try {
      const d = await api.get(`/v1/hosts/${host.id}/disk`);
      const docker = Object.entries(d.docker);
      clear(
        detail,
        h(
          "section",
          { class: "card", "aria-labelledby": "disk-title" },
          h("h2", { id: "disk-title" }, `Disk of ${d.host_name}`),
          h(
            "table",
            { class: "compact" },
            h("thead", {}, h("tr", {}, ["Path", "Used", "Free", "Total", "Used %"].map((c) => h("th", { scope: "col" }, c)))),
            h("tbody", {}, d.paths.map((p) => h("tr", {}, h("td", {}, h("code", {}, p.path)), h("td", {}, bytes(p.used_bytes)), h("td", {}, bytes(p.free_bytes)), h("td", {}, bytes(p.total_bytes)), h("td", {}, `${p.percent} %`)))),
          ),
          h("p", {}, `Workspace quotas allocated here: ${bytes(d.allocated_bytes)}; promised to workspaces not running yet: ${bytes(d.promised_bytes)}.`),
          docker.length ? h("p", {}, "Docker: ", docker.map(([k, v]) => `${k.replaceAll("_", " ")} ${bytes(v)}`).join(", "), ".") : null,
          h("button", { type: "button", class: "quiet", onclick: () => clear(detail) }, "Close"),
        ),
      );
      detail.querySelector("h2").setAttribute("tabindex", "-1");
      detail.querySelector("h2").focus();
    } catch (err) {
      clear(detail, errorBox(`The disk report could not be loaded. ${api.explain(err)}`));
    }
  }

  refresh();
  return () => {
    state.stopped = true;
    clearTimeout(state.timer);
  };
}

function round(n) {
  return Math.round(n * 100) / 100;
}
