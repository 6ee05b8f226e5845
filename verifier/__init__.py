"""The verifier role: re-runs every posted round from public artifacts as soon as its validation
chunk is revealed, challenges a result that does not reproduce, and votes when drawn into a
dispute committee. Built on the auditor's round check (`backend.audit.verify.verify_round`),
which uses the same deterministic round function as the aggregator.

May import: backend.audit, aggregator.round, backend.protocol, backend.chain, backend.storage,
backend.core. Nothing imports it but the entry points (`backend.cli`, `backend.simulation`).
"""

from verifier.journal import VerifierJournal
from verifier.service import Action, VerifierService

__all__ = ["Action", "VerifierJournal", "VerifierService"]
