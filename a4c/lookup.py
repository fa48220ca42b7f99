"""Find a resource by what a person types: a full id, a name, or a unique id prefix (what tables show).

A full UUID is fetched directly. Otherwise the name is tried (the API's
``?name=`` filter where it has one, else a listing), then an id prefix over
the listing. Ambiguity is a usage problem (exit 2) that lists the candidates;
no match is "not found" (exit 3).
"""

from __future__ import annotations

import re
import typing

from a4c import client, errors, output

Obj = dict[str, typing.Any]

UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
ID_PREFIX = re.compile(r"^[0-9a-fA-F-]+$")
JOB_SCAN = 1000  # jobs are many: prefixes are matched among the newest ones only


def _one(ref: str, what: str, matches: list[Obj], how: str) -> Obj | None:
    if len(matches) > 1:
        shown = ", ".join(f"{output.short(m['id'])} ({m.get('name') or m.get('description') or m.get('kind', '')})" for m in matches[:5])
        raise errors.UsageProblem(f"{ref!r} {how} {len(matches)} {what}s: {shown}; give more of the id")
    return matches[0] if matches else None


def _by_prefix(ref: str, what: str, items: list[Obj]) -> Obj | None:
    if not ID_PREFIX.match(ref):
        return None
    return _one(ref, what, [i for i in items if i["id"].startswith(ref.lower())], "starts")


def _named(api: client.Client, collection: str, ref: str) -> list[Obj]:
    try:
        return api.items(f"/v1/{collection}", name=ref)
    except errors.ApiError as exc:
        if exc.status in (400, 422):  # not even a valid name: it can only be an id prefix
            return []
        raise


def find(api: client.Client, collection: str, ref: str, what: str, *, listed_by: str, name_filter: bool = False) -> Obj:
    """``collection`` is the URL segment (``workspaces``, ``images``, ``hosts``, ``users``, ``enrolment-tokens``)."""
    if UUID.match(ref):
        return api.get(f"/v1/{collection}/{ref}")
    if name_filter:
        found = _one(ref, what, _named(api, collection, ref), "names")
        if found is not None:
            return found
        everything = api.items(f"/v1/{collection}")
    else:
        everything = api.items(f"/v1/{collection}")
        found = _one(ref, what, [i for i in everything if i.get("name") == ref], "names")
        if found is not None:
            return found
    found = _by_prefix(ref, what, everything)
    if found is None:
        raise errors.NotFound(f"no {what} named {ref!r} or with an id starting so ({listed_by} shows them)")
    return found


def workspace(api: client.Client, ref: str) -> Obj:
    return find(api, "workspaces", ref, "workspace", listed_by="a4c workspaces list", name_filter=True)


def image(api: client.Client, ref: str) -> Obj:
    """Names are per owner (docs/workspaces.md): your own image of that name, else the shared one, as the API resolves it."""
    if not UUID.match(ref):
        named = _named(api, "images", ref)
        if len(named) > 1:
            me = api.get("/v1/me")["id"]
            for preferred in ([i for i in named if i["owner_id"] == me], [i for i in named if i.get("shared")]):
                if len(preferred) == 1:
                    return preferred[0]
    return find(api, "images", ref, "image", listed_by="a4c images list", name_filter=True)


def schedule(api: client.Client, image: Obj, ref: str | None) -> Obj:
    """One of ``image``'s schedules by id or id prefix; with none given, its only one."""
    found = api.get(f"/v1/images/{image['id']}/schedules")["items"]
    listed_by = f"a4c images schedules {image['name']} shows them"
    if ref is None:
        if len(found) == 1:
            return found[0]
        if not found:
            raise errors.NotFound(f"image {image['name']} has no schedules")
        raise errors.UsageProblem(f"image {image['name']} has {len(found)} schedules; name one ({listed_by})")
    match = _by_prefix(ref.lower(), "schedule", found)
    if match is None:
        raise errors.NotFound(f"image {image['name']} has no schedule with an id starting {ref!r} ({listed_by})")
    return match


def host(api: client.Client, ref: str) -> Obj:
    return find(api, "hosts", ref, "host", listed_by="a4c hosts list")


def user(api: client.Client, ref: str) -> Obj:
    return find(api, "users", ref, "user", listed_by="a4c admin users list")


def enrolment_token(api: client.Client, ref: str) -> Obj:
    # Enrolment tokens have no name (and no GET by id): match the id among the listing.
    if UUID.match(ref):
        ref = ref.lower()
    found = _by_prefix(ref, "enrolment token", api.items("/v1/enrolment-tokens"))
    if found is None:
        raise errors.NotFound(f"no enrolment token with an id starting {ref!r} (a4c admin enrolment-tokens list shows them)")
    return found


def job(api: client.Client, ref: str) -> Obj:
    if UUID.match(ref):
        return api.get(f"/v1/jobs/{ref}")
    found = _by_prefix(ref, "job", api.items("/v1/jobs", limit=JOB_SCAN))
    if found is None:
        raise errors.NotFound(f"no job with an id starting {ref!r} among your newest {JOB_SCAN} jobs; give the full id")
    return found
