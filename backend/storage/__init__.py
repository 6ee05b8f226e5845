"""Content-addressed storage behind one small interface, with a local and an IPFS (Kubo RPC)
implementation and verified reads.

May import: `backend.core`.
"""
