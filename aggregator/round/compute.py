"""One round's result as a pure function of public inputs.

`compute_round` is what makes a round re-verifiable: given the global model, the submissions
(raw blobs as fetched), the validation split and the job's recorded settings, it returns the
reasons, scores and next model bytes, identically every time. It chains the named stages of
`aggregator.round.stages`; the I/O around it (gather, post, replay) lives in `gather`, `driver`
and `replay`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aggregator.round.records import PublicUpdates, RoundOutcome, Submission, TrainerOutcome
from aggregator.round.stages import (
    LossProbe,
    RoundInputs,
    aggregate,
    check_harm,
    check_reference,
    clip_of,
    decode,
    find_copies,
    losses_alone,
    rule_of,
    score,
    screen,
)
from backend.core.codec import Tensors
from backend.core.datasets import Dataset
from backend.core.devices import one_torch_thread
from backend.core.jobspec import JobSpec
from backend.core.models import evaluate, template_of

__all__ = [
    "PublicUpdates",
    "RoundOutcome",
    "Submission",
    "TrainerOutcome",
    "compute_round",
    "rule_of",
]


def compute_round(
    spec: JobSpec,
    global_weights: Tensors,
    submissions: Sequence[Submission],
    validation: Dataset,
    previous_updates: PublicUpdates | np.ndarray | None = None,
    momentum: np.ndarray | None = None,
) -> RoundOutcome:
    """Validate, detect copies and outliers, score, aggregate. Deterministic; no I/O.

    ``previous_updates`` are earlier rounds' revealed updates, with who sent each
    (`aggregator.round.replay.previous_updates`); a bare array has no owners, and copy
    detection then falls back to the job's fixed scaled-copy cosine.

    Runs on one torch thread (`one_torch_thread`), whatever the machine.
    """
    with one_torch_thread():
        return _compute(spec, global_weights, submissions, validation, previous_updates, momentum)


def _compute(
    spec: JobSpec,
    global_weights: Tensors,
    submissions: Sequence[Submission],
    validation: Dataset,
    previous_updates: PublicUpdates | np.ndarray | None,
    momentum: np.ndarray | None,
) -> RoundOutcome:
    inputs = RoundInputs(
        spec,
        template_of(spec.model),
        global_weights,
        submissions,
        validation,
        previous_updates
        if previous_updates is None or isinstance(previous_updates, PublicUpdates)
        else PublicUpdates(np.asarray(previous_updates)),
        momentum,
    )
    decoded = decode(inputs)
    selection = screen(inputs, decoded, find_copies(inputs, decoded))
    selection = check_reference(inputs, decoded, selection)
    loss_before, _ = evaluate(spec.model, global_weights, validation.x, validation.y)
    probe = LossProbe.of(inputs)
    clip = clip_of(inputs, decoded, selection.accepted)
    # With momentum the outer optimizer steps anyway: gains are measured against that step.
    ref_loss = (
        probe.loss_of(np.zeros(inputs.template.size)) if momentum is not None else loss_before
    )
    loss_alone = losses_alone(probe, decoded, selection, clip)
    selection = check_harm(probe, decoded, selection, clip, loss_alone, ref_loss)
    scored = score(probe, decoded, selection.accepted, clip, loss_alone, ref_loss)
    return aggregate(probe, decoded, selection.verdicts, scored, loss_before)
