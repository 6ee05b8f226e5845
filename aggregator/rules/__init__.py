"""Pure math, no I/O: linear-algebra kernels, the robust rules (one module each), copy detection,
contribution scoring, the outer optimizer and fixed-point scores.

May import: `backend.core`.
"""
