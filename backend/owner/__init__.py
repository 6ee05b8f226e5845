"""The project owner's role as a library: write a job file, publish the spec and weights, create,
start and finalize a job, reveal validation chunks, download results. Used by the CLI, the
demo and the tests.

May import: `backend.protocol`, `backend.chain`, `backend.storage`, `backend.core`.
"""
