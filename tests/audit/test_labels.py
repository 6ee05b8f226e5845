"""One table each for job statuses and reason codes: the labels and groups the audit side uses."""

from __future__ import annotations

import pytest

from backend.audit.api.models import StatusName
from backend.audit.folding import round_tally
from backend.audit.queries import is_flagged, status_label
from backend.core.errors import Reason
from backend.core.jobstatus import JobStatus


def test_job_status_labels_round_trip() -> None:
    for status in JobStatus:
        assert JobStatus.from_label(status.label) is status
    assert JobStatus.SETTLED.label == "settled"
    with pytest.raises(ValueError):
        JobStatus.from_label("paused")


def test_the_api_lists_jobs_by_every_status_but_none() -> None:
    assert [s.value for s in StatusName] == [s.label for s in JobStatus if s is not JobStatus.NONE]


def test_status_label_keeps_an_unknown_code_as_its_number() -> None:
    assert status_label(4) == "settled"
    assert status_label(99) == "99"


def test_reason_groups() -> None:
    assert Reason.absence_codes() == {Reason.MISSING, Reason.UNAVAILABLE}
    assert Reason.slashable_codes() == set(range(3, 12))
    assert not Reason.absence_codes() & Reason.slashable_codes()
    assert Reason.label_of(None) is None
    assert Reason.label_of(9) == "copy"
    assert Reason.label_of(42) == "unknown-42"


def test_flags_and_round_tally() -> None:
    assert [is_flagged(c) for c in (None, 0, 1, 2, 3, 11, 12)] == [
        False, False, False, False, True, True, False,
    ]  # fmt: skip
    assert round_tally([0, 0, 1, 2, 8, 3]) == {"accepted": 2, "flagged": 2, "missing": 2}
    assert round_tally([]) == {"accepted": 0, "flagged": 0, "missing": 0}
