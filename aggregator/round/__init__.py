"""One round of a job as named pure stages (decode, copies, outliers, reference, harm, scores,
aggregate) chained by `compute_round`, plus the one `gather` and the one `replay` that the
aggregator's driver and the auditor both use.

May import: `backend.protocol`, `backend.chain`, `backend.storage`, `aggregator.rules`,
`backend.core`.
"""
