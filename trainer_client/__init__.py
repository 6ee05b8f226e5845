"""The trainer's role: the honest protocol client (fetch, train, commit, reveal), its persistent
state and the runner that follows a job. Simulated adversaries live apart in `adversaries`, used
only by the demo and the benchmarks.

A role: may import `backend.protocol`, `backend.chain`, `backend.storage`, `backend.core`.
"""
