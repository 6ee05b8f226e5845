"""`fedmarket aggregator serve`: the long-running aggregator — its journal, per-job state, job
discovery and HTTP status API.

A role: may import `aggregator.round` and everything below.
"""
