"""HTTP details both of fedmarket's web apps (the auditor's API, the aggregator service) share."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.routing import BaseRoute, Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> set[str]:
    """Every method that some route serves at the request's path (mounts searched too)."""
    methods: set[str] = set()
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.NONE:
            continue
        if isinstance(route, Mount) and isinstance(route.app, StaticFiles):
            # what StaticFiles serves: Starlette 1.3 (flwr pins it) raises its 405 with no Allow
            methods |= {"GET", "HEAD"}
        elif isinstance(route, Mount):
            methods |= allowed_methods(route.routes, {**scope, **child})
        else:
            methods |= set(getattr(route, "methods", None) or ())
    return methods


def http_error_headers(request: Request, exc: StarletteHTTPException) -> dict[str, str] | None:
    """The exception's headers; on a 405, an `Allow` naming every method the path accepts.

    RFC 9110 §15.5.6 requires `Allow` on a 405. Starlette's own names only the first route
    whose path matched (two routes can share a path), so the routes are searched again from
    the top; the union with the raiser's header keeps what an opaque mounted app allows.
    """
    headers = dict(exc.headers or {})
    if exc.status_code != 405:
        return headers or None
    raised = [headers.pop(k) for k in list(headers) if k.lower() == "allow"]
    given = {m.strip() for value in raised for m in value.split(",") if m.strip()}
    # a mount rewrote root_path while routing; match from the app's own root again
    root = request.scope.get("app_root_path", request.scope.get("root_path", ""))
    found = allowed_methods(request.app.router.routes, {**request.scope, "root_path": root})
    headers["Allow"] = ", ".join(sorted(given | found))
    return headers
