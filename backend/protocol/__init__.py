"""What every role shares above the adapters: settings, opening the chain and store they name,
verified reads of a job's public artifacts, and the HTTP error conventions.

May import: `backend.chain`, `backend.storage`, `backend.core`.
"""
