"""The HTTP API of `forewarn serve` (cli.md, "The HTTP API"), on FastAPI.

Every refusal is `application/problem+json` (RFC 9457): status, title, detail (and `errors` for bad input),
including unknown routes, wrong methods, bad query parameters and internal errors (logged, never shown).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from forewarn import __version__, instants
from forewarn.service import Problem, Service

log = logging.getLogger("forewarn.api")

PROBLEM = "application/problem+json"
NDJSON = "application/x-ndjson"
FORMATS = ("json", "table", "markdown", "html", "sarif", "junit", "csv")
MEDIA_TYPES = {
    "json": "application/json",
    "table": "text/plain; charset=utf-8",
    "markdown": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "sarif": "application/sarif+json",
    "junit": "application/xml",
    "csv": "text/csv; charset=utf-8",
}
JSON_MEDIA = "application/json"
POSTS_IN_FLIGHT = 8
"""Event posts read and validated at once, at most (the others wait, unread): bounds the memory that
bodies of up to --max-body take, whatever the number of clients."""


def problem_response(status: int, detail: str, errors: list[dict[str, Any]] | None = None,
                     headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status,
                            "detail": detail}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


class ProblemModel(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


class Appended(BaseModel):
    appended: int
    duplicates: int
    seq: int


class ProposeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: str
    end: str
    customers: list[str] | Literal["all"] = "all"
    impact: Literal["none", "degraded", "interruption"] = "interruption"
    emergency: bool = False


class RetryBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[str] = []  # communication ids, Message-IDs or outbox keys; none: every failed delivery


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": ProblemModel, "content": {PROBLEM: {}}, "description": HTTPStatus(c).phrase} for c in codes}


def instant(value: str, name: str) -> datetime:
    try:
        return instants.parse_instant(value)
    except ValueError as exc:
        raise Problem(422, f"{name}: {exc}", [{"index": None, "line": None, "id": None, "field": name,
                                              "message": str(exc)}]) from None


def create_app(service: Service) -> FastAPI:
    settings = service.settings
    app = FastAPI(
        title="forewarn",
        version=__version__,
        description="The engine's event log and plan over HTTP (cli.md, `forewarn serve`).",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )

    # -- refusals ----------------------------------------------------------------------------

    @app.exception_handler(Problem)
    async def _problem(_request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.detail, exc.errors, exc.headers or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404 and exc.detail == "Not Found":
            detail = f"no such resource: {request.url.path}"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        else:
            detail = str(exc.detail)
        return problem_response(exc.status_code, detail, headers=dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ())]
            where = ".".join(loc[1:]) if loc and loc[0] in ("query", "body", "path", "header") else ".".join(loc)
            errors.append({"index": None, "line": None, "id": None, "field": where or None,
                           "message": str(err.get("msg", "invalid"))})
        fields = ", ".join(e["field"] or "request" for e in errors)
        return problem_response(422, f"invalid request: {fields}", errors)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error", exc_info=exc,
                  extra={"fields": {"event": "internal_error", "path": request.url.path}})
        return problem_response(500, "internal error; the service log has the details")

    # -- authentication ------------------------------------------------------------------------

    def role(needed: str) -> Any:
        async def check(request: Request) -> None:  # async: no thread of the pool taken for a header check
            if settings.insecure:
                return
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            challenge = {"WWW-Authenticate": 'Bearer realm="forewarn"'}
            if scheme.lower() != "bearer" or not token.strip():
                raise Problem(401, "a bearer token is required (Authorization: Bearer TOKEN)", headers=challenge)
            found = settings.tokens.role_of(token.strip())
            if found is None:
                raise Problem(401, "unknown token", headers=challenge)
            if found != needed:
                raise Problem(403, f"this needs a {needed} token; the token given is a {found}'s")

        return Depends(check)

    writer, reader = role("writer"), role("reader")
    posts = asyncio.Semaphore(POSTS_IN_FLIGHT)

    # -- events ------------------------------------------------------------------------------

    @app.post(
        "/v1/events",
        dependencies=[writer],
        response_model=Appended,
        responses=_responses(401, 403, 413, 415, 422),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    JSON_MEDIA: {"schema": {"type": "array", "items": {"type": "object"}}},
                    NDJSON: {"schema": {"type": "string", "description": "one event (JSON object) per line"}},
                },
            }
        },
        summary="Validate and append events: all or nothing, idempotent per event id",
    )
    async def post_events(request: Request) -> Response:
        media = request.headers.get("content-type", JSON_MEDIA).split(";")[0].strip().lower()
        if media not in (JSON_MEDIA, NDJSON):
            raise Problem(415, f"Content-Type must be {JSON_MEDIA} (an array of events) or {NDJSON}")
        async with posts:
            body = await read_limited(request, settings.max_body)
            result = await asyncio.wrap_future(service.append(body, media == NDJSON))
        return JSONResponse(result)

    @app.get("/v1/events", dependencies=[reader], responses=_responses(401, 403, 422),
             summary="The log's events recorded after SEQ, in recording order")
    def get_events(
        after: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=10_000)] = 1000
    ) -> Response:
        return Response(service.events_after(after, limit), media_type=JSON_MEDIA)

    # -- plan ----------------------------------------------------------------------------------

    @app.get("/v1/plan", dependencies=[reader], responses=_responses(401, 403, 422),
             summary="The JSON of `plan --format json`")
    def get_plan(as_of: str = "now") -> Response:
        t = instant(as_of, "as_of")
        return Response(service.plan_json(t), media_type=JSON_MEDIA)

    @app.post("/v1/plan/propose", dependencies=[reader], responses=_responses(401, 403, 422),
              summary="The JSON of `plan --propose`: when each notice must go out for a proposed window")
    def propose(body: ProposeBody, as_of: str = "now") -> Response:
        from forewarn.engine.propose import ProposalError, proposal_from, propose_window
        from forewarn.engine.views import proposal_json

        t = instant(as_of, "as_of")
        try:
            proposal = proposal_from(body.model_dump(), t)
            answer = service.one_at_a_time(
                lambda: propose_window(service.events_until(t), service.policy, proposal, t)
            )
        except ProposalError as exc:
            raise Problem(422, str(exc)) from None
        return Response(proposal_json(answer), media_type=JSON_MEDIA)

    # -- deliveries refused for good --------------------------------------------------------------

    @app.post("/v1/outbox/retry-failed", dependencies=[writer], responses=_responses(401, 403, 422),
              summary="Resend failed deliveries (all, or those named), as `run --retry-failed`")
    async def retry_failed(body: RetryBody | None = None) -> Response:
        ids = body.ids if body is not None else []
        reset = await asyncio.wrap_future(service.retry_failed(ids))
        return JSONResponse({"reset": reset})

    # -- audit ---------------------------------------------------------------------------------

    @app.get(
        "/v1/audit",
        dependencies=[reader],
        responses={**_responses(401, 403, 422), 200: {"description": "The report; header Forewarn-Exit: 0|1"}},
        summary="The audit report in a format; its exit status in the Forewarn-Exit header",
    )
    def get_audit(
        as_of: str = "now",
        since: str | None = None,
        until: str | None = None,
        format: Literal["json", "table", "markdown", "html", "sarif", "junit", "csv"] = "json",
    ) -> Response:
        t = instant(as_of, "as_of")
        start = instant(since, "since") if since else None
        end = instant(until, "until") if until else None
        if start and end and start >= end:
            raise Problem(422, "since must be before until")
        result, text = service.one_at_a_time(lambda: _audit(t, start, end, format))
        exit_status = "1" if result.violations else "0"
        return Response(text, media_type=MEDIA_TYPES[format], headers={"Forewarn-Exit": exit_status})

    def _audit(t: datetime, start: datetime | None, end: datetime | None, fmt: str) -> tuple[Any, str]:
        from dataclasses import replace

        from forewarn.audit.formats import render
        from forewarn.relational.audit import DETAILED_FORMATS, audit_events

        events, log = service.events_until_fingerprinted(t)
        judged = audit_events(events, service.policy, t, start, end, DETAILED_FORMATS & {fmt})
        result = replace(judged, log=log)  # as `forewarn audit --db` states it
        return result, render(fmt, result)

    # -- operations ----------------------------------------------------------------------------

    @app.get("/healthz", summary="200 while the process serves")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses=_responses(503),
             summary="200 when the log is readable, the policy loaded and the engine's last pass recent")
    def readyz() -> dict[str, str]:
        reason = service.readiness()
        if reason is not None:
            raise Problem(503, reason)
        return {"status": "ready"}

    @app.get("/metrics", dependencies=[reader], responses=_responses(401, 403),
             summary="Prometheus text format")
    def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json", dependencies=[reader], responses=_responses(401, 403),
             summary="This document")
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    return app


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is over `limit` bytes (never buffered beyond)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem(413, f"the body ({int(declared)} bytes) is over the limit of {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Problem(413, f"the body is over the limit of {limit} bytes")
    return bytes(body)
