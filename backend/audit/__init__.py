"""The auditor's role: the indexer (schema apart from ingestion), re-verification of every round,
the settlement formulas, the read-only REST API and the dashboard.

May import: `aggregator.round`, `backend.protocol`, `backend.chain`, `backend.storage`,
`aggregator.rules`, `backend.core`.
"""
