"""Serving the dashboard: ``GET /`` (the page) and ``GET /ui/<version>/<file>`` (its static assets).

``setup(app)`` registers both on an application made by ``api.app.init_app``.
The assets are read once at start-up and named by a hash of their contents
(``/ui/<version>/js/main.js``), so browsers may cache them for good
(``immutable``) and a new release is fetched at once; the page itself is never
cached. Nothing is built at install time: the wheel ships the files as they
are in ``controlplane/web/static``.

The application marks the routes public and not rate-limited (``setup``'s
``mark``, controlplane/api/app.py): a page load fetches a dozen small files
before the user has a token, and the anonymous per-address budget is meant for API calls (an office behind one NAT
must not get 429s for loading the dashboard). The page talks to the API like
any client, with the user's bearer token.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import mimetypes
import pathlib
import typing

from aiohttp import web

STATIC = pathlib.Path(__file__).parent / "static"
INDEX = "index.html"
ASSETS_PLACEHOLDER = "%ASSETS%"
# The page's one inline script (static/js/boot.js: reload when the page's own
# modules fail to arrive); inline so that it cannot fail to arrive itself, and
# allowed by its hash in the Content-Security-Policy rather than 'unsafe-inline'.
BOOT_PLACEHOLDER = "%BOOT%"
BOOT = "js/boot.js"

_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".html": "text/html", ".json": "application/json"}
# The page runs only its own scripts and styles and talks only to this origin.
_CSP = (
    "default-src 'none'; script-src 'self' {boot}; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
_FOREVER = "public, max-age=31536000, immutable"


@dataclasses.dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str


@dataclasses.dataclass(frozen=True)
class Assets:
    """Every file under the static folder, and the version that names this set."""

    files: dict[str, Asset]
    version: str

    @classmethod
    def load(cls, root: pathlib.Path = STATIC) -> Assets:
        files: dict[str, Asset] = {}
        digest = hashlib.sha256()
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            name = path.relative_to(root).as_posix()
            body = path.read_bytes()
            digest.update(name.encode() + b"\0" + body + b"\0")
            files[name] = Asset(body, _TYPES.get(path.suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream")
        for required in (INDEX, BOOT):
            if required not in files:
                raise FileNotFoundError(f"the dashboard's {required} is missing from {root}")
        return cls(files, digest.hexdigest()[:16])

    def page(self) -> bytes:
        body = self.files[INDEX].body.replace(ASSETS_PLACEHOLDER.encode(), f"/ui/{self.version}".encode())
        return body.replace(BOOT_PLACEHOLDER.encode(), self.files[BOOT].body)

    @functools.cached_property
    def page_headers(self) -> dict[str, str]:
        """The page's headers, its Content-Security-Policy naming the inline script's hash (computed once)."""
        boot = base64.b64encode(hashlib.sha256(self.files[BOOT].body).digest()).decode()
        return {"Content-Security-Policy": _CSP.format(boot=f"'sha256-{boot}'"), **_PAGE_HEADERS}


ASSETS = web.AppKey("dashboard_assets", Assets)


async def page(request: web.Request) -> web.Response:
    assets = request.app[ASSETS]
    return web.Response(body=assets.page(), content_type="text/html", charset="utf-8", headers=assets.page_headers)


async def asset(request: web.Request) -> web.Response:
    assets = request.app[ASSETS]
    name = request.match_info["path"]
    found = assets.files.get(name) if name != INDEX else None
    if found is None:
        raise web.HTTPNotFound(reason=f"no dashboard file {name!r}")
    # An older page (another instance mid-rollout) may ask for another version:
    # answer with this one's file, but do not let it be cached as that version.
    cache = _FOREVER if request.match_info["version"] == assets.version else "no-cache"
    headers = {"Cache-Control": cache, "X-Content-Type-Options": "nosniff"}
    return web.Response(body=found.body, headers={**headers, "Content-Type": found.content_type})


async def to_page(request: web.Request) -> web.Response:
    raise web.HTTPFound("/")


Handler = typing.Callable[[web.Request], typing.Awaitable[web.Response]]


def _as_is(handler: Handler, path: str) -> Handler:
    return handler


def setup(app: web.Application, *, mark: typing.Callable[[Handler, str], Handler] = _as_is, root: pathlib.Path = STATIC) -> None:
    """Serve the dashboard from ``app``: ``/`` and ``/ui/<version>/<file>``.

    ``mark(handler, path)`` lets the application annotate each route for its
    middleware (controlplane/api/app.py marks them public and not rate-limited)
    without this module importing the API.
    """
    app[ASSETS] = Assets.load(root)
    app.router.add_get("/", mark(page, "/"), name="dashboard")
    app.router.add_get("/ui", mark(to_page, "/ui"), name="dashboard_redirect")
    app.router.add_get("/ui/{version:[0-9a-f]{1,64}}/{path:[A-Za-z0-9_./-]+}", mark(asset, "/ui/{version}/{path}"), name="dashboard_asset")
