// The dashboard's shell: who is signed in, the navigation, and the hash
// router (#/jobs?query=…, #/jobs/<id>, #/workspaces, #/images, #/hosts). Each page is a
// module exporting mount(main, ctx, route) that returns a function to stop it
// (its polling, its listeners) when the user leaves.

import * as api from "./api.js";
import { clear, errorBox, loading } from "./dom.js";
import * as signin from "./pages/signin.js";

const PAGES = {
  jobs: () => import("./pages/jobs.js"),
  job: () => import("./pages/job.js"),
  workspaces: () => import("./pages/workspaces.js"),
  images: () => import("./pages/images.js"),
  hosts: () => import("./pages/hosts.js"),
};

const main = document.getElementById("main");
let me = null; // {id, name, role} from GET /v1/me
let stop = () => {};
let generation = 0;

// "#/jobs/abc?query=x" -> {page: "job", id: "abc", params: URLSearchParams}
export function parseRoute(hash) {
  const [path, search = ""] = hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean);
  const params = new URLSearchParams(search);
  const section = parts[0] ?? "jobs";
  if (section === "jobs" && parts[1]) return { page: "job", id: parts[1], params };
  if (section in PAGES) return { page: section, id: parts[1] ?? null, params };
  return { page: "jobs", id: null, params };
}

async function show({ focus = false } = {}) {
  const mine = ++generation;
  stop();
  stop = () => {};
  const route = parseRoute(location.hash);
  for (const link of document.querySelectorAll("[data-nav]")) {
    const current = link.dataset.nav === route.page || (route.page === "job" && link.dataset.nav === "jobs");
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  clear(main, loading());
  try {
    const page = await PAGES[route.page]();
    if (mine !== generation) return;
    clear(main);
    stop = page.mount(main, { me, navigate }, route) ?? (() => {});
    // After following a link, start reading (and tabbing) at the new page.
    if (focus) main.focus({ preventScroll: true });
  } catch (err) {
    if (mine !== generation) return;
    // A failed import stays failed for this document (the browser keeps it in
    // its module map), so the retry is a reload.
    clear(main, errorBox(`This page could not be loaded: ${err.message}. Reload to retry.`, () => location.reload()));
  }
}

export function navigate(hash, { replace = false } = {}) {
  if (location.hash === hash) return;
  if (replace) {
    history.replaceState(null, "", hash);
    return;
  }
  location.hash = hash;
}

function shell(visible) {
  document.getElementById("top").hidden = !visible;
  for (const el of document.querySelectorAll("[data-admin]")) el.hidden = !(visible && me?.role === "admin");
  document.getElementById("who").textContent = visible ? `${me.name} (${me.role})` : "";
}

function signedOut(reason) {
  stop();
  stop = () => {};
  api.clearToken();
  me = null;
  shell(false);
  document.title = "Sign in · A4C dashboard";
  signin.mount(main, { reason, onSignedIn: start });
}

async function start(who) {
  me = who;
  shell(true);
  await show();
}

async function resume() {
  if (!api.token()) return signedOut(null);
  clear(main, loading("Checking your token…"));
  try {
    await start(await api.get("/v1/me"));
  } catch (err) {
    if (err instanceof api.ApiError && err.status === 401) return; // whenUnauthorized showed the sign-in form
    clear(main, errorBox(api.explain(err), () => resume()));
  }
}

api.whenUnauthorized((err) => signedOut(`You were signed out: ${err.message}.`));
document.getElementById("signout").addEventListener("click", () => signedOut("You signed out."));
window.addEventListener("hashchange", () => me && show({ focus: true }));
resume();
