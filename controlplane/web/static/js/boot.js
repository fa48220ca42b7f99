// The page's first script, inlined into it by controlplane/web/routes.py so
// that it cannot itself fail to arrive. When the dashboard's own code does not
// load (Chromium cancels loads in flight with ERR_NETWORK_CHANGED whenever a
// network interface comes or goes, which Docker does on every container start;
// a control plane restarting drops connections), the page reloads itself, at
// most three times a minute with a growing pause, then says what happened and
// offers a reload. Without this a failed module leaves "Loading the dashboard…"
// forever.
(() => {
  const KEY = "a4c.boot-reloads"; // when this tab last reloaded itself (ms since the epoch)
  const LIMIT = 3;
  const WINDOW_MS = 60_000;
  let failed = false;

  const ownCode = (el) =>
    (el instanceof HTMLScriptElement && el.type === "module") || (el instanceof HTMLLinkElement && el.rel === "modulepreload");

  // The reloads of the last minute; null when the tab keeps no storage (then it never reloads by itself).
  function recentReloads() {
    try {
      const now = Date.now();
      return JSON.parse(sessionStorage.getItem(KEY) ?? "[]").filter((t) => now - t < WINDOW_MS);
    } catch {
      return null;
    }
  }

  function show(role, cls, text, withReload) {
    const box = document.createElement("div");
    box.className = cls;
    box.setAttribute("role", role);
    const line = document.createElement("p");
    line.textContent = text;
    box.append(line);
    if (withReload) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Reload";
      button.addEventListener("click", () => location.reload());
      box.append(button);
    }
    // Above the page, not in #main: the modules that did arrive may render there after this.
    box.id = "boot-problem";
    const place = () => {
      document.getElementById("boot-problem")?.remove();
      document.body.prepend(box);
    };
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", place);
    else place();
  }

  // Capturing: error events of elements do not bubble.
  addEventListener(
    "error",
    (event) => {
      if (failed || !ownCode(event.target)) return;
      failed = true;
      const reloads = recentReloads();
      if (reloads !== null && reloads.length < LIMIT) {
        try {
          sessionStorage.setItem(KEY, JSON.stringify([...reloads, Date.now()]));
          setTimeout(() => location.reload(), 250 * 2 ** reloads.length);
          show("status", "loading", `The dashboard's code did not load; retrying (${reloads.length + 1} of ${LIMIT})…`, false);
          return;
        } catch {
          // no storage after all: fall through to the message
        }
      }
      show(
        "alert",
        "error-box",
        `The dashboard's code could not be loaded${reloads === null ? "" : ` after ${LIMIT} retries`}: the control plane may be down ` +
          "or restarting, or the connection keeps dropping. The same data is available through the HTTP API and the a4c command-line client.",
        true,
      );
    },
    true,
  );
})();
