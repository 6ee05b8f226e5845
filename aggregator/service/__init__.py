"""`fedmarket aggregator serve`: the long-running aggregator — its journal, per-job state, job
discovery and HTTP status API.

A role: may import `aggregator.round` and everything below.
"""

from aggregator.service.http import create_app
from aggregator.service.journal import Journal
from aggregator.service.service import AggregatorService
from aggregator.service.state import WAITING_FOR_VALIDATION, JobState

__all__ = ["WAITING_FOR_VALIDATION", "AggregatorService", "JobState", "Journal", "create_app"]
