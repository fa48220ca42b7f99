"""Transactional domain operations: what the API views (and the reconciler, scheduler and CLI) call.

Every function takes an ``AsyncSession`` whose transaction the *caller* owns
(``async with session.begin(): ...``), does its reads, locks and writes in it,
and raises only :mod:`controlplane.errors` for expected failures. So one HTTP
request is one transaction: the row changes, the jobs and the outbox rows
commit together or not at all (docs/decisions/0002-outbox-relay.md), and an
``Idempotency-Key`` claim commits with them.
"""
