"""/v1/users and /v1/tokens (admin): create users, issue and revoke API tokens; /v1/me."""

from __future__ import annotations

from controlplane.api import endpoint, keys
from controlplane.api.schemas import common
from controlplane.api.schemas import users as schemas
from controlplane.services import users

routes = endpoint.Routes("users")


@routes.get("/v1/me", response=schemas.Me)
async def whoami(call: endpoint.Call) -> schemas.Me:
    """Who the presented token belongs to."""
    p = call.user
    return schemas.Me(id=p.user_id, name=p.name, role=p.role, token_id=p.token_id)


@routes.post("/v1/users", body=schemas.UserCreate, response=schemas.User, status=201, auth="admin")
async def create_user(call: endpoint.Call) -> schemas.User:
    """Create a user (role user or admin); 409 if the name is taken."""
    body: schemas.UserCreate = call.body
    return schemas.User.model_validate(await users.create_user(call.session, body.name, body.role))


@routes.get("/v1/users", query=common.ListQuery, response=schemas.UserPage, auth="admin")
async def list_users(call: endpoint.Call) -> schemas.UserPage:
    """List users, newest first."""
    rows, cursor = await users.list_users(call.session, limit=call.page_size(), cursor=call.query.cursor)
    return schemas.UserPage(items=[schemas.User.model_validate(r) for r in rows], next_cursor=cursor)


@routes.get("/v1/users/{user_id}", response=schemas.User, auth="admin")
async def get_user(call: endpoint.Call) -> schemas.User:
    """Get one user."""
    return schemas.User.model_validate(await users.get_user(call.session, call.params["user_id"]))


@routes.post("/v1/users/{user_id}/tokens", body=schemas.TokenCreate, response=schemas.TokenIssued, status=201, auth="admin", secret=True)
async def issue_token(call: endpoint.Call) -> schemas.TokenIssued:
    """Issue an API token for a user. The token is in this answer only; only its SHA-256 is kept."""
    body: schemas.TokenCreate = call.body
    ttl = body.expires_in_days if body.expires_in_days is not None else call.settings.auth.token_ttl_days
    issued = await users.issue_token(call.session, call.params["user_id"], name=body.name, ttl_days=ttl)
    return schemas.TokenIssued.model_validate({**schemas.Token.model_validate(issued.row).model_dump(), "token": issued.token})


@routes.get("/v1/users/{user_id}/tokens", response=schemas.TokenList, auth="admin")
async def list_tokens(call: endpoint.Call) -> schemas.TokenList:
    """List a user's tokens (prefixes only, never the secrets)."""
    rows = await users.list_tokens(call.session, call.params["user_id"])
    return schemas.TokenList(items=[schemas.Token.model_validate(r) for r in rows])


@routes.delete("/v1/tokens/{token_id}", response=schemas.Token, auth="admin")
async def revoke_token(call: endpoint.Call) -> schemas.Token:
    """Revoke an API token; it stops working at once on this instance, within auth.cache_ttl on others."""
    row = await users.revoke_token(call.session, call.params["token_id"])
    forget = call.request.app[keys.AUTH].forget_token
    token_id = row.id
    call.after_commit(lambda: forget(token_id))
    return schemas.Token.model_validate(row)
