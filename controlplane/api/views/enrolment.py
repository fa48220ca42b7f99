"""/v1/enrolment-tokens (admin) and /v1/agents/enrol (an agent's first call)."""

from __future__ import annotations

from controlplane.api import auth, endpoint
from controlplane.api.schemas import common
from controlplane.api.schemas import users as schemas
from controlplane.services import enrolment

routes = endpoint.Routes("agents")


@routes.post("/v1/enrolment-tokens", body=schemas.EnrolmentTokenCreate, response=schemas.EnrolmentTokenIssued, status=201, auth="admin", secret=True)
async def issue_enrolment_token(call: endpoint.Call) -> schemas.EnrolmentTokenIssued:
    """Issue an enrolment token (optionally limited in uses and lifetime). Shown once."""
    body: schemas.EnrolmentTokenCreate = call.body
    issued = await enrolment.issue_token(
        call.session, call.user, description=body.description, max_uses=body.max_uses, expires_in=body.expires_in_seconds
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


@routes.post("/v1/agents/enrol", body=schemas.EnrolRequest, response=schemas.Enrolled, status=201, auth="public", secret=True, errors=(401,))
async def enrol_agent(call: endpoint.Call) -> schemas.Enrolled:
    """An agent trades an enrolment token for its host id and signing key (re-enrolling a known host name re-keys it).

    401 if the token is unknown, revoked, expired or used up (the message says which).
    """
    body: schemas.EnrolRequest = call.body
    done = await enrolment.enrol(
        call.session, call.settings, token=body.token, host_name=body.host_name, labels=dict(body.labels),
        capacity=enrolment.AgentCapacity(cpus=body.capacity.cpus, memory_mb=body.capacity.memory_mb, disk_bytes=body.capacity.disk_bytes),
        agent_version=body.agent_version, remote_addr=auth.client_address(call.request, call.settings.rate_limit),
    )
    return schemas.Enrolled(host_id=done.host.id, key=done.key)
