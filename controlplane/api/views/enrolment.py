"""/v1/enrolment-tokens (admin) and /v1/agents/enrol (an agent's first call)."""

from __future__ import annotations

from controlplane import errors
from controlplane.api import auth, endpoint, keys
from controlplane.api.schemas import common
from controlplane.api.schemas import users as schemas
from controlplane.services import enrolment

routes = endpoint.Routes("agents")


@routes.post("/v1/enrolment-tokens", body=schemas.EnrolmentTokenCreate, response=schemas.EnrolmentTokenIssued, status=201, auth="admin", secret=True)
async def issue_enrolment_token(call: endpoint.Call) -> schemas.EnrolmentTokenIssued:
    """Issue an enrolment token: one use and one hour unless max_uses / expires_in_seconds ask otherwise. Shown once."""
    body: schemas.EnrolmentTokenCreate = call.body
    issued = await enrolment.issue_token(
        call.session,
        call.user,
        description=body.description,
        settings=call.settings.enrolment,
        max_uses=body.max_uses,
        expires_in=body.expires_in_seconds,
    )
    shown = schemas.EnrolmentToken.model_validate(issued.row).model_dump()
    return schemas.EnrolmentTokenIssued.model_validate({**shown, "token": issued.token})


@routes.get("/v1/enrolment-tokens", query=common.ListQuery, response=schemas.EnrolmentTokenPage, auth="admin")
async def list_enrolment_tokens(call: endpoint.Call) -> schemas.EnrolmentTokenPage:
    """List enrolment tokens with their use counts (prefixes only)."""
    rows, cursor = await enrolment.list_tokens(call.session, limit=call.page_size(), cursor=call.query.cursor)
    return schemas.EnrolmentTokenPage(items=[schemas.EnrolmentToken.model_validate(r) for r in rows], next_cursor=cursor)


@routes.delete("/v1/enrolment-tokens/{token_id}", response=schemas.EnrolmentToken, auth="admin")
async def revoke_enrolment_token(call: endpoint.Call) -> schemas.EnrolmentToken:
    """Revoke an enrolment token: it enrols nothing from now on (hosts it enrolled keep their keys)."""
    return schemas.EnrolmentToken.model_validate(await enrolment.revoke_token(call.session, call.params["token_id"]))


@routes.post("/v1/agents/enrol", body=schemas.EnrolRequest, response=schemas.Enrolled, status=201, auth="public", secret=True, errors=(401, 403))
async def enrol_agent(call: endpoint.Call) -> schemas.Enrolled:
    """An agent trades an enrolment token for its host id and signing key (re-enrolling a known host name re-keys it).

    401 if the token is unknown, revoked, expired or used up (the message says which), or ``proof`` is wrong.
    409 ``host_recently_active`` if the host sent a heartbeat recently: re-keying it then needs ``force``
    (with an admin's bearer token; 403 otherwise) or ``proof`` of its current key.
    """
    body: schemas.EnrolRequest = call.body
    if body.force:
        await _require_admin(call)
    done = await enrolment.enrol(
        call.session,
        call.settings,
        token=body.token,
        host_name=body.host_name,
        labels=dict(body.labels),
        capacity=enrolment.AgentCapacity(cpus=body.capacity.cpus, memory_mb=body.capacity.memory_mb, disk_bytes=body.capacity.disk_bytes),
        agent_version=body.agent_version,
        remote_addr=auth.client_address(call.request, call.settings.rate_limit),
        force=body.force,
        proof=body.proof,
    )
    return schemas.Enrolled(host_id=done.host.id, key=done.key)


async def _require_admin(call: endpoint.Call) -> None:
    """The route is public (agents have no API token); force is an admin's decision, so it needs an admin's token."""
    token = auth.bearer(call.request)
    principal = await call.request.app[keys.AUTH].principal(token) if token else None
    if principal is None or not principal.is_admin:
        raise errors.Forbidden("force: only an admin may force a re-enrolment; send their token as 'Authorization: Bearer <token>'")
