"""A trainer's round reports its slow stages (download, train, upload) to a progress callback."""

from __future__ import annotations

from tests.aggregator_service.service_helpers import make_job


def test_a_round_reports_download_train_and_upload_to_completion(
    chain, market, store, aggregator, digits
) -> None:
    job = make_job(chain, market, store, aggregator.address, digits, trainers=3, rounds=1)
    client = job.clients[0]
    seen: dict[str, list[tuple[int, int | None]]] = {}
    client.progress = lambda stage, done, total: seen.setdefault(stage, []).append((done, total))
    contribution = client.participate(job.job_id, 1)
    # the sealed update is published once the commitment is mined, in the commit phase
    assert set(seen) == {"download", "train", "upload"}
    for other in job.clients[1:]:  # all committed: the reveal phase opens
        other.participate(job.job_id, 1)
    uploads = len(seen["upload"])
    client.reveal(job.job_id, 1)
    assert len(seen["upload"]) == uploads  # the reveal publishes nothing more
    model_bytes = len(store.get(market.current_model(job.job_id)[1]))
    assert seen["download"][-1] == (model_bytes, model_bytes)
    rows = len(client.data.y)
    steps = -(-rows // 32)  # one local epoch at the spec's batch size
    assert [d for d, _ in seen["train"]] == list(range(1, steps + 1))
    assert all(t == steps for _, t in seen["train"])
    update_bytes = len(store.get(contribution.cid))
    assert seen["upload"][-1] == (update_bytes, update_bytes)
