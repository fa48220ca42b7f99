// Workspaces: the user's own (an admin sees all), with start/stop/delete
// behind a confirmation, and a create form checked against the API's contract
// before it is sent; the API's own field errors appear beside the fields.

import * as api from "../api.js";
import { announce, badge, bytes, clear, confirmDialog, empty, errorBox, h, loading, redrawKeepingFocus, shortId, timeEl } from "../dom.js";
import * as schema from "../schema.js";

const PAGE = 50;

function pollMs() {
  return Number(sessionStorage.getItem("a4c.pollMs")) || 5000;
}

// The longest one blocking read of the shown workspace waits (the API cuts it to its watch.max_wait).
const WAIT = "60s";

export function mount(main, { me }, route) {
  const state = { items: [], cursor: null, hosts: new Map(), users: new Map(), timer: null, stopped: false };
  document.title = "Workspaces · A4C dashboard";
  const detail = h("div", { class: "detail-slot" });
  const notice = h("div", { class: "notice-slot", role: "status", "aria-live": "polite" });
  const list = h("div", { class: "table-slot" }, loading("Loading workspaces…"));
  const more = h("div", { class: "more-slot" });
  const formSlot = h("section", { class: "card create", "aria-labelledby": "create-title" }, h("h2", { id: "create-title" }, "Create a workspace"), loading("Loading the form…"));
  clear(
    main,
    h("h1", {}, me.role === "admin" ? "Workspaces (all users)" : "Your workspaces"),
    detail,
    notice,
    // The list takes the page's whole width and the form follows it: side by
    // side, a wide table ran under the form (tests/web/test_workspaces_layout.py).
    h("div", { class: "workspaces-layout" }, h("section", { "aria-label": "Workspace list" }, list, more), formSlot),
  );

  // --- list ---------------------------------------------------------------------
  async function names() {
    if (me.role !== "admin") return;
    // Host and owner names for admins (the workspace shows only their ids).
    const [hosts, users] = await Promise.all([
      api.get("/v1/hosts", { limit: 500 }).catch(() => ({ items: [] })),
      api.get("/v1/users", { limit: 500 }).catch(() => ({ items: [] })),
    ]);
    state.hosts = new Map(hosts.items.map((x) => [x.id, x.name]));
    state.users = new Map(users.items.map((x) => [x.id, x.name]));
  }

  async function refresh({ quiet = false } = {}) {
    clearTimeout(state.timer);
    try {
      // Reload as many rows as are shown, so live updates keep "load more" pages.
      const limit = Math.min(Math.max(PAGE, state.items.length), 500);
      const page = await api.get("/v1/workspaces", { limit });
      if (state.stopped) return;
      const signature = JSON.stringify([page.items, page.next_cursor]);
      if (signature !== state.signature || !quiet) {
        state.signature = signature;
        state.items = page.items;
        state.cursor = page.next_cursor;
        render();
      }
    } catch (err) {
      if (state.stopped) return;
      if (!quiet || !state.items.length) clear(list, errorBox(`The workspaces could not be loaded. ${api.explain(err)}`, () => refresh()));
    }
    if (!state.stopped) state.timer = setTimeout(() => refresh({ quiet: true }), pollMs());
  }

  async function loadMore(button) {
    button.disabled = true;
    try {
      const page = await api.get("/v1/workspaces", { limit: PAGE, cursor: state.cursor });
      const known = new Set(state.items.map((w) => w.id));
      state.items.push(...page.items.filter((w) => !known.has(w.id)));
      state.cursor = page.next_cursor;
      render();
      more.querySelector("button")?.focus();
    } catch (err) {
      clear(more, errorBox(`More workspaces could not be loaded. ${api.explain(err)}`, () => render()));
    }
  }

  function render() {
    redrawKeepingFocus(list, draw);
  }

  function draw() {
    if (!state.items.length) {
      clear(list, empty(me.role === "admin" ? "There are no workspaces." : "You have no workspaces yet.", "Create one with the form: give it a name, an image and its resources."));
      clear(more);
      return;
    }
    const admin = me.role === "admin";
    const headers = ["Name", "State", ...(admin ? ["Owner"] : []), "Host", "Image", "Resources", "Ports", "Created / updated", "Actions"];
    clear(
      list,
      h(
        "table",
        { class: "workspaces" },
        h("caption", { class: "visually-hidden" }, "Workspaces, newest first"),
        h("thead", {}, h("tr", {}, headers.map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, state.items.map((w) => row(w, admin))),
      ),
    );
    clear(more, state.cursor ? h("button", { type: "button", class: "load-more", onclick: (e) => loadMore(e.currentTarget) }, `Load ${PAGE} more`) : null);
  }

  function row(w, admin) {
    const ports = w.published_ports.length
      ? w.published_ports.map((p) => h("div", {}, `${p.host_ip}:${p.host_port} → ${p.container_port}/${p.protocol}`))
      : w.ports.length
        ? [w.ports.map((p) => `${p.container_port}/${p.protocol}`).join(", "), h("div", { class: "muted" }, "not published yet")]
        : h("span", { class: "muted" }, "none");
    const host = w.host_id ? (admin ? h("a", { href: `#/hosts/${w.host_id}` }, state.hosts.get(w.host_id) ?? shortId(w.host_id)) : h("code", { title: w.host_id }, shortId(w.host_id))) : h("span", { class: "muted" }, "not placed");
    const state_ = [badge(w.observed_state, "ws")];
    if (w.desired_state !== w.observed_state) state_.push(h("span", { class: "muted" }, ` → ${w.desired_state}`));
    if (w.state_reason) state_.push(h("div", { class: "reason" }, w.state_reason));
    return h(
      "tr",
      { dataset: { workspaceId: w.id, rowKey: w.id, state: w.observed_state }, class: route.id === w.id ? "selected" : null },
      h("th", { scope: "row" }, h("a", { href: `#/workspaces/${w.id}` }, w.name)),
      h("td", {}, state_),
      admin ? h("td", {}, state.users.get(w.owner_id) ?? h("code", { title: w.owner_id }, shortId(w.owner_id))) : null,
      h("td", {}, host),
      h("td", { class: "image" }, h("code", { class: "wrap" }, w.image_ref)),
      h("td", { class: "resources" }, resources(w)),
      h("td", {}, ports),
      h("td", { class: "when" }, h("div", {}, timeEl(w.created_at, { compact: true })), h("div", { class: "muted" }, timeEl(w.updated_at, { compact: true }))),
      h("td", { class: "actions" }, actions(w)),
    );
  }

  function resources(w) {
    const note = diskNote(w);
    return [
      h("div", { class: "nowrap" }, `${w.cpus} CPUs`),
      h("div", { class: "nowrap" }, `${w.memory_mb} MiB`),
      h("div", { class: "nowrap" }, diskAmount(w)),
      note ? h("div", { class: "muted" }, note) : null,
    ];
  }

  // "1.2 GiB of 20 GiB disk" where its host caps it; "20 GiB disk" + "reserved, not enforced" where not (docs/operations/disk.md).
  function diskAmount(w) {
    const used = w.disk?.used_bytes;
    return w.disk?.enforced !== false && used !== null && used !== undefined ? `${bytes(used)} of ${w.disk_gb} GiB disk` : `${w.disk_gb} GiB disk`;
  }

  function diskNote(w) {
    const d = w.disk || {};
    const parts = [];
    if (d.enforced === false) parts.push("reserved, not enforced" + (d.used_bytes !== null && d.used_bytes !== undefined ? `; ${bytes(d.used_bytes)} used` : ""));
    if (d.over) parts.push("over its reservation");
    return parts.join("; ");
  }

  function actions(w) {
    if (w.desired_state === "deleted") return h("span", { class: "muted" }, "being deleted");
    const out = [];
    if (w.desired_state === "stopped" || ["stopped", "exited"].includes(w.observed_state)) out.push(action(w, "start", "Start", `Start workspace ${w.name}?`, "Its container starts again on its host."));
    if (w.desired_state === "running" && ["running", "creating"].includes(w.observed_state)) out.push(action(w, "stop", "Stop", `Stop workspace ${w.name}?`, "Its container stops; it keeps its host and disk."));
    out.push(action(w, "delete", "Delete", `Delete workspace ${w.name}?`, "Its container and its data are removed. This cannot be undone."));
    return out;
  }

  function action(w, verb, label, question, consequence) {
    const button = h("button", { type: "button", class: verb === "delete" ? "danger small" : "small", "aria-label": `${label} ${w.name}` }, label);
    button.addEventListener("click", async () => {
      if (!(await confirmDialog(question, consequence, label))) {
        button.focus();
        return;
      }
      button.disabled = true;
      try {
        const done = verb === "delete" ? await api.del(`/v1/workspaces/${w.id}`) : await api.post(`/v1/workspaces/${w.id}/${verb}`);
        say(`${label} of ${w.name} accepted`, done.job);
        await refresh();
      } catch (err) {
        button.disabled = false;
        clear(notice, errorBox(`${label} of ${w.name} failed. ${api.explain(err)}`));
        button.focus();
      }
    });
    return button;
  }

  function say(text, job) {
    clear(notice, h("p", { class: "notice ok" }, `${text}: `, job ? h("a", { href: `#/jobs/${job.id}` }, `job ${shortId(job.id)} (${job.status})`) : null, "."));
    announce(`${text}.`);
  }

  // --- one workspace (#/workspaces/<id>), live --------------------------------------
  // Each read after the first is a blocking read (?index=&wait=, docs/decisions/0012-blocking-reads.md):
  // the API answers as soon as the workspace changes. It polls only while the API does not answer.
  const watching = { index: 0, timer: null, reading: null };

  async function showDetail() {
    if (!route.id) return;
    if (!watching.index) clear(detail, loading("Loading the workspace…"));
    const began = Date.now();
    watching.reading = new AbortController();
    try {
      const params = watching.index ? { index: watching.index, wait: WAIT } : undefined;
      const w = await api.get(`/v1/workspaces/${encodeURIComponent(route.id)}`, params, { signal: watching.reading.signal });
      if (state.stopped) return;
      const changed = w.version !== watching.index;
      watching.index = w.version;
      if (changed) drawDetail(w);
      // Unchanged and early: the API could not block (it is restarting, or lost its change feed); wait as a poll would.
      const early = !changed && Date.now() - began < 1000;
      watching.timer = setTimeout(showDetail, early ? pollMs() : 0);
    } catch (err) {
      if (state.stopped) return;
      if (watching.index && (err.status === 0 || err.status === 429 || err.status >= 500)) {
        watching.timer = setTimeout(showDetail, pollMs()); // keep what is shown; blocking again once the API answers
      } else if (watching.index && err.status === 404) {
        clear(detail, h("p", { class: "notice" }, "This workspace has been deleted."));
      } else {
        clear(detail, errorBox(`This workspace could not be shown. ${api.explain(err)}`));
      }
    }
  }

  function drawDetail(w) {
    const env = Object.entries(w.env);
    clear(
      detail,
      h(
        "section",
        { class: "card", "aria-labelledby": "ws-title" },
        h("h2", { id: "ws-title" }, `Workspace ${w.name}`, " ", badge(w.observed_state, "ws")),
        h(
          "dl",
          { class: "facts" },
          [
            ["Id", h("code", {}, w.id)],
            ["Wanted", w.desired_state],
            ["Why", w.state_reason || "–"],
            ["Image", h("code", {}, w.image_ref)],
            ["Resources", `${w.cpus} CPUs, ${w.memory_mb} MiB memory, ${w.disk_gb} GiB disk`],
            ["Disk", [diskAmount(w), diskNote(w)].filter(Boolean).join(", ")],
            ["Container", w.container_id ? h("code", {}, w.container_id.slice(0, 12)) : "–"],
            ["Environment", env.length ? env.map(([k, v]) => h("div", {}, h("code", {}, `${k}=${v}`))) : "–"],
            ["Placement", w.placement?.reason ?? "–"],
            ["Jobs", h("a", { href: `#/jobs?${new URLSearchParams({ query: `workspace:${w.id}` })}` }, "Jobs of this workspace")],
          ].map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
        ),
      ),
    );
  }

  // --- create ---------------------------------------------------------------------
  async function buildForm() {
    let doc;
    let rules;
    try {
      ({ doc, schema: rules } = await schema.schemaOf("WorkspaceCreate"));
    } catch (err) {
      clear(formSlot, h("h2", { id: "create-title" }, "Create a workspace"), errorBox(`The form could not be prepared. ${api.explain(err)}`, () => buildForm()));
      return;
    }
    const images = await api.get("/v1/images", { limit: 500 }).catch(() => ({ items: [] }));
    const props = rules.properties;
    const fields = {};
    const field = (name, label, input, help) => {
      const error = h("p", { class: "field-error", id: `ws-${name}-error`, role: "alert" });
      input.id = `ws-${name}`;
      input.name = name;
      input.setAttribute("aria-describedby", [help ? `ws-${name}-help` : null, `ws-${name}-error`].filter(Boolean).join(" "));
      fields[name] = { input, error };
      return h("div", { class: "field" }, h("label", { for: input.id }, label), input, help ? h("p", { class: "help", id: `ws-${name}-help` }, help) : null, error);
    };
    const source = h(
      "fieldset",
      {},
      h("legend", {}, "Image"),
      h("label", { class: "radio" }, h("input", { type: "radio", name: "source", value: "image_ref", checked: true }), " A Docker reference"),
      h("label", { class: "radio" }, h("input", { type: "radio", name: "source", value: "image" }), " A registered image"),
    );
    const datalist = h("datalist", { id: "image-names" }, images.items.map((i) => h("option", { value: i.name })));
    const form = h(
      "form",
      { novalidate: true, class: "create-form" },
      field("name", "Name", h("input", { type: "text", required: true, autocomplete: "off", ...schema.attributes(doc, props.name) }), "Lower-case letters, digits and dashes; unique among your workspaces."),
      source,
      field("image_ref", "Docker reference", h("input", { type: "text", autocomplete: "off", placeholder: "debian:12", ...schema.attributes(doc, props.image_ref) })),
      field("image", "Registered image", h("input", { type: "text", autocomplete: "off", list: "image-names", disabled: true, ...schema.attributes(doc, props.image) }), images.items.length ? `${images.items.length} image(s) available.` : "No registered images yet."),
      datalist,
      h(
        "div",
        { class: "field-row" },
        field("cpus", "CPUs", h("input", { type: "number", inputmode: "decimal", value: "1", required: true, ...schema.attributes(doc, props.cpus) })),
        field("memory_mb", "Memory (MiB)", h("input", { type: "number", value: "1024", required: true, ...schema.attributes(doc, props.memory_mb) })),
        field("disk_gb", "Disk (GiB)", h("input", { type: "number", value: "10", required: true, ...schema.attributes(doc, props.disk_gb) })),
      ),
      field("ports", "Ports", h("input", { type: "text", autocomplete: "off", placeholder: "8080, 5353/udp" }), "Container ports to publish, comma-separated, /udp for UDP."),
      field("env", "Environment", h("textarea", { rows: 3, spellcheck: "false", placeholder: "KEY=value" }), "One KEY=value per line."),
      h("p", { class: "field-error", id: "ws-form-error", role: "alert" }),
      h("button", { type: "submit" }, "Create workspace"),
    );
    for (const radio of source.querySelectorAll("input[type=radio]")) {
      radio.addEventListener("change", () => {
        const useRef = form.elements.source.value === "image_ref";
        fields.image_ref.input.disabled = !useRef;
        fields.image.input.disabled = useRef;
      });
    }
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      submit(form, fields, doc, rules);
    });
    clear(formSlot, h("h2", { id: "create-title" }, "Create a workspace"), form);
  }

  function readForm(form, fields, doc, rules) {
    const props = rules.properties;
    const problems = {};
    const body = {};
    const text = (name) => fields[name].input.value.trim();
    body.name = text("name");
    const imageField = form.elements.source.value;
    body[imageField] = text(imageField);
    for (const name of ["cpus", "memory_mb", "disk_gb"]) body[name] = text(name) === "" ? NaN : Number(text(name));
    for (const name of ["name", imageField, "cpus", "memory_mb", "disk_gb"]) {
      if (body[name] === "" || Number.isNaN(body[name])) problems[name] = "required";
      else {
        const reason = schema.problem(doc, props[name], body[name]);
        if (reason) problems[name] = reason;
      }
    }
    const ports = [];
    for (const part of text("ports").split(",").map((p) => p.trim()).filter(Boolean)) {
      const match = /^(\d+)(?:\/(tcp|udp))?$/i.exec(part);
      const port = match ? { container_port: Number(match[1]), protocol: (match[2] ?? "tcp").toLowerCase() } : null;
      const reason = port ? schema.problem(doc, doc.components.schemas.Port.properties.container_port, port.container_port) : "write ports as 8080 or 8080/udp";
      if (reason) {
        problems.ports = `${part}: ${reason}`;
        break;
      }
      ports.push(port);
    }
    if (ports.length) body.ports = ports;
    const env = {};
    const envName = props.env.propertyNames?.pattern;
    for (const line of fields.env.input.value.split("\n").map((l) => l.trim()).filter(Boolean)) {
      const at = line.indexOf("=");
      const key = at > 0 ? line.slice(0, at) : "";
      if (!key || (envName && !new RegExp(envName).test(key))) {
        problems.env = `${line.slice(0, 40)}: write KEY=value, KEY being letters, digits and _`;
        break;
      }
      env[key] = line.slice(at + 1);
    }
    if (Object.keys(env).length) body.env = env;
    return { body, problems };
  }

  async function submit(form, fields, doc, rules) {
    const formError = form.querySelector("#ws-form-error");
    for (const { input, error } of Object.values(fields)) {
      error.textContent = "";
      input.removeAttribute("aria-invalid");
    }
    formError.textContent = "";
    const { body, problems } = readForm(form, fields, doc, rules);
    if (Object.keys(problems).length) {
      showProblems(fields, problems);
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    button.textContent = "Creating…";
    try {
      const done = await api.post("/v1/workspaces", body);
      const w = done.workspace;
      say(`Workspace ${w.name} created (${w.observed_state}${w.state_reason ? `: ${w.state_reason}` : ""})`, done.job);
      form.reset();
      fields.image.input.disabled = true;
      fields.image_ref.input.disabled = false;
      await refresh();
    } catch (err) {
      if (err instanceof api.ApiError && (err.status === 422 || err.status === 409)) {
        const found = {};
        for (const f of err.fields) {
          const name = f.path.split(".")[0];
          if (fields[name]) found[name] = found[name] ? `${found[name]}; ${f.reason}` : f.reason;
        }
        if (err.code === "name_taken") found.name = err.message;
        if (Object.keys(found).length) showProblems(fields, found);
        else formError.textContent = api.explain(err);
      } else {
        formError.textContent = `The workspace was not created. ${api.explain(err)}`;
      }
    } finally {
      button.disabled = false;
      button.textContent = "Create workspace";
    }
  }

  function showProblems(fields, problems) {
    let first = null;
    for (const [name, reason] of Object.entries(problems)) {
      const f = fields[name];
      if (!f) continue;
      f.error.textContent = reason;
      f.input.setAttribute("aria-invalid", "true");
      first ??= f.input;
    }
    first?.focus();
  }

  names().then(() => refresh());
  showDetail();
  buildForm();
  return () => {
    state.stopped = true;
    clearTimeout(state.timer);
    clearTimeout(watching.timer);
    watching.reading?.abort();
  };
}
