// The page's first script, inlined into it by controlplane/web/routes.py so
// that it cannot itself fail to arrive. When the dashboard's own code does not
// load (Chromium cancels loads in flight with ERR_NETWORK_CHANGED whenever a
// network interface comes or goes, which Docker does on every container start;
// a control plane restarting drops connections), the page reloads itself up to
// three times with a growing pause, then says what happened and offers a
// reload. Without this a failed module leaves "Loading the dashboard…" forever.
(() => {
  const KEY = "a4c.boot-reloads";
  const LIMIT = 3;
  let failed = false;

  const ownCode = (el) =>
    (el instanceof HTMLScriptElement && el.type === "module") || (el instanceof HTMLLinkElement && el.rel === "modulepreload");

  function say(role, cls, text) {
    const box = document.createElement("div");
    box.className = cls;
    box.setAttribute("role", role);
    const line = document.createElement("p");
    line.textContent = text;
    box.append(line);
    document.getElementById("main").replaceChildren(box);
    return box;
  }

  // Capturing: error events of elements do not bubble.
  addEventListener(
    "error",
    (event) => {
      if (failed || !ownCode(event.target)) return;
      failed = true;
      const reloads = Number(sessionStorage.getItem(KEY) ?? 0);
      if (reloads < LIMIT) {
        sessionStorage.setItem(KEY, String(reloads + 1));
        say("status", "loading", `The dashboard's code did not load; retrying (${reloads + 1} of ${LIMIT})…`);
        setTimeout(() => location.reload(), 250 * 2 ** reloads);
        return;
      }
      sessionStorage.removeItem(KEY);
      const box = say(
        "alert",
        "error-box",
        `The dashboard's code could not be loaded after ${LIMIT} retries: the control plane may be down or restarting, ` +
          "or the connection keeps dropping. The same data is available through the HTTP API and the a4c command-line client.",
      );
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Reload";
      button.addEventListener("click", () => location.reload());
      box.append(button);
    },
    true,
  );
  // "load" comes after every module ran or failed: a clean start forgets the count.
  addEventListener("load", () => failed || sessionStorage.removeItem(KEY));
})();
