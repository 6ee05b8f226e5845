"""Developer tools, apart from the product: compiling the contracts, a local anvil node, and the
devnet of real parts (anvil + an IPFS daemon).

May import: `backend.protocol`, `backend.chain`, `backend.storage`, `backend.core`.
"""
