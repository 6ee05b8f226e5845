"""The auditors' read-only REST API over the indexer's database (FastAPI, OpenAPI-documented).

`create_api(db_url, store=...)` builds the app; `fedmarket api serve` runs it with uvicorn.
Every list is paginated (limit/offset, bounded) and filterable; every error is JSON with a
reason: 404 for an unknown job/round/trainer, 422 for bad parameters, 405 (with `Allow`) for
a method a path does not serve, never a 500.
The dashboard (`/`) is a static page of `backend.audit` that draws its charts from these
endpoints.

Modules: `app` (create_api, error handlers), `models` (response models), `deps` (shared context
and parameters), one router per resource (`meta`, `jobs`, `metrics`, `trainers`, `events`).
May import: `backend.audit` (queries, schema, metrics), `backend.protocol`, `backend.storage`,
`backend.core` — like the rest of `backend.audit`.
"""

from backend.audit.api.app import create_api

__all__ = ["create_api"]
