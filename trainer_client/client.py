"""The trainer's side of a round: fetch the global model, train locally, commit Δ, publish it
sealed, then reveal it.

Only the pseudo-gradient leaves the machine, and not before its commitment is mined: a rival
watching the store could otherwise commit the same bytes first and have this trainer judged the
copier. The CID is computed without storing anything; right after the commitment is mined the
update is published *sealed* (`backend.core.sealing`), so that it is in the store when the
aggregator takes its snapshot at the end of the commit phase, while nobody can read it before
the reveal. The salt of each commitment and the outbox are kept until the reveal (in memory,
and next to the state file when one is given, so a restart loses neither).
"""

from __future__ import annotations

import contextlib
import functools
import json
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from eth_account.signers.local import LocalAccount

from backend.chain.market import MarketClient, commitment_hash
from backend.core.codec import Tensors
from backend.core.compression import encode_update, load_residual, save_residual
from backend.core.datasets import Dataset, check_fits
from backend.core.devices import resolve_device
from backend.core.errors import ConfigError, ContentMismatch, StorageUnavailable
from backend.core.files import atomic_write
from backend.core.jobspec import JobSpec
from backend.core.models import template_of
from backend.core.privacy import PrivacyClaim, train_local_dp
from backend.core.sealing import seal
from backend.core.training import pseudo_gradient, train_local
from backend.protocol.fetch import fetch_current_weights, fetch_job_spec
from backend.storage import ContentStore, Transfer, sha256_bytes

# Progress of the round's slow stages: (stage, done, total or None); stages are "download"
# (bytes of the global model), "train" (optimizer steps) and "upload" (bytes of the update).
StageProgress = Callable[[str, int, int | None], None]


@dataclass
class PendingReveal:
    job_id: int
    round: int
    content_hash: str  # hex
    cid: str
    salt: str  # hex
    revealed: bool = False
    published: bool = False  # the sealed update is in the store


@dataclass
class Contribution:
    """What one round of local work produced (the delta stays available for simulations)."""

    round: int
    delta: Tensors
    train_loss: float
    cid: str
    content_hash: bytes
    commit_gas: int


class TrainerClient:
    """One honest trainer on one market.

    `local_data` and `make_update` are the hooks a simulated adversary overrides (see
    `trainer_client.adversaries.AdversarialClient`); this class never tampers with anything.
    """

    def __init__(
        self,
        market: MarketClient,
        store: ContentStore,
        account: LocalAccount,
        data: Dataset,
        *,
        seed: int = 0,
        state_file: Path | None = None,
        progress: StageProgress | None = None,
        device: str = "cpu",
        dp_seed: int | None = None,
    ) -> None:
        self.market = market
        self.store = store
        self.account = account
        self.data = data
        self.seed = seed
        self.state_file = state_file
        self.progress = progress
        self.device = resolve_device(device)  # where local training runs (never the round)
        # DP-SGD's sampling and noise: secret OS entropy unless a seed is given (simulations);
        # a known seed would let anyone subtract the noise
        self.dp_seed = dp_seed
        self._claims: dict[tuple[int, int], PrivacyClaim] = {}
        self._specs: dict[int, JobSpec] = {}
        self._residuals: dict[int, Tensors] = {}
        self._outbox: dict[tuple[int, int], bytes] = {}
        self.pending: dict[tuple[int, int], PendingReveal] = self._load_state()

    @property
    def address(self) -> str:
        return str(self.account.address)

    def spec(self, job_id: int) -> JobSpec:
        if job_id not in self._specs:
            spec = fetch_job_spec(self.market, self.store, job_id)
            check_fits(self.data, spec.model.input_dim, spec.model.num_classes, spec.min_rows)
            self._specs[job_id] = spec
        return self._specs[job_id]

    def _stage(self, stage: str) -> Transfer | None:
        return None if self.progress is None else functools.partial(self.progress, stage)

    def global_weights(self, job_id: int) -> Tensors:
        spec = self.spec(job_id)
        return fetch_current_weights(self.market, self.store, spec, job_id, self._stage("download"))

    def local_data(self, spec: JobSpec) -> Dataset:
        """The data to train on for a job: the private shard (a hook for simulated adversaries)."""
        return self.data

    def make_update(self, w_global: Tensors, w_local: Tensors, seed: int) -> Tensors:
        """The Δ to submit after local training (a hook for simulated adversaries); `seed` is
        the round's training seed."""
        return pseudo_gradient(w_global, w_local)

    def local_update(self, job_id: int, round_: int) -> tuple[Tensors, float]:
        """Train on the private shard from the current global model; return (Δ, train loss)."""
        spec = self.spec(job_id)
        w_global = self.global_weights(job_id)
        seed = self.seed * 1_000_003 + round_
        if spec.privacy is not None:
            return self._dp_update(job_id, round_, w_global, seed)
        w_local, loss = train_local(
            spec.model,
            w_global,
            self.local_data(spec),
            spec.training,
            seed=seed,
            on_step=self._stage("train"),
            device=self.device,
        )
        return self.make_update(w_global, w_local, seed), loss

    def _dp_update(
        self, job_id: int, round_: int, w_global: Tensors, seed: int
    ) -> tuple[Tensors, float]:
        """DP-SGD as the job asks (`backend.core.privacy`); the claim goes with the commit."""
        spec = self.spec(job_id)
        assert spec.privacy is not None
        w_local, loss, claim = train_local_dp(
            spec.model,
            w_global,
            self.local_data(spec),
            spec.training,
            spec.privacy,
            rounds=int(self.market.job(job_id).rounds),
            round_=round_,
            seed=None if self.dp_seed is None else self.dp_seed * 1_000_003 + round_,
            on_step=self._stage("train"),
            device=self.device,
        )
        self._claims[(job_id, round_)] = claim
        return self.make_update(w_global, w_local, seed), loss

    def _residual_path(self, job_id: int) -> Path | None:
        if self.state_file is None:
            return None
        return self.state_file.with_name(f"{self.state_file.stem}-job{job_id}-residual.safetensors")

    def residual(self, job_id: int) -> Tensors | None:
        """What earlier rounds' compression left out (error feedback), or None."""
        if job_id in self._residuals:
            return self._residuals[job_id]
        path = self._residual_path(job_id)
        if path is None:
            return None
        return load_residual(path, template_of(self.spec(job_id).model))

    def commit_update(self, job_id: int, round_: int, delta: Tensors) -> tuple[str, bytes, int]:
        """Encode Δ with the job's codec (plus the carried residual), commit to it, then
        publish it sealed (`publish`).

        Returns (cid of the sealed update, sha256 of the update, gas). The pending reveal, the
        outbox and the new residual are saved before the commit is sent: a crash after it
        must still be able to publish and reveal, and must not apply the residual twice.
        """
        spec = self.spec(job_id)
        blob, new_residual = encode_update(
            delta,
            template_of(spec.model),
            spec.codec,
            topk_fraction=spec.topk_fraction,
            residual=self.residual(job_id),
            metadata=self._claim_metadata(job_id, round_),
        )
        cid = self.store.cid_of(seal(blob))  # publishes nothing
        content_hash = sha256_bytes(blob)
        self.stash(job_id, round_, blob)
        salt = secrets.token_bytes(32)
        self.pending[(job_id, round_)] = PendingReveal(
            job_id, round_, content_hash.hex(), cid, salt.hex()
        )
        if spec.codec != "fp32":
            self._residuals[job_id] = new_residual
            path = self._residual_path(job_id)
            if path is not None:
                save_residual(path, new_residual)
        self.save_state()  # before the commit: a crash after it must still be able to reveal
        gas = self.send_commit(job_id, round_)
        # If the store is down it stays pending: `trainer run` publishes again while it can.
        with contextlib.suppress(StorageUnavailable):
            self.publish(job_id, round_)
        return cid, content_hash, gas

    def _claim_metadata(self, job_id: int, round_: int) -> dict[str, str] | None:
        """The privacy claim of this round's DP training, for the update's header (None
        when it did not train with DP-SGD this round)."""
        claim = self._claims.pop((job_id, round_), None)
        return None if claim is None else claim.to_metadata()

    def send_commit(self, job_id: int, round_: int) -> int:
        """Send the commitment of an already prepared (pending) update; returns the gas used."""
        p = self.pending[(job_id, round_)]
        commitment = commitment_hash(
            bytes.fromhex(p.content_hash),
            p.cid,
            bytes.fromhex(p.salt),
            self.address,
            job_id,
            round_,
        )
        return self.market.commit(self.account, job_id, commitment, announce=p.cid).gas_used

    def publish(self, job_id: int, round_: int) -> None:
        """Store the committed update sealed, once its commitment is mined; the aggregator
        counts it only if it is in the store when the commit phase closes."""
        p = self.pending[(job_id, round_)]
        if p.published:
            return
        if int(self.market.participant(job_id, self.address)["lastCommitRound"]) != round_:
            raise ConfigError(
                f"job {job_id} round {round_}: this trainer's commitment is not on chain; "
                "its update stays private until it is"
            )
        blob = self.outbox(job_id, round_)
        cid = self.store.put(seal(blob), self._stage("upload"))
        if cid != p.cid and self.store.cid_of(blob) == p.cid:
            # A commitment from before sealing (a state file of an older client) names the
            # plain update's CID: publish it plain, as that client would have.
            cid = self.store.put(blob, self._stage("upload"))
        if cid != p.cid:
            raise ContentMismatch(
                f"the store gave CID {cid} to the update committed as {p.cid} "
                f"(job {job_id} round {round_}): is it the same kind of store as at commit time?"
            )
        p.published = True
        self.save_state()

    def participate(self, job_id: int, round_: int, delta: Tensors | None = None) -> Contribution:
        """Train (unless a Δ is given) and commit for this round."""
        loss = float("nan")
        if delta is None:
            delta, loss = self.local_update(job_id, round_)
        cid, content_hash, gas = self.commit_update(job_id, round_, delta)
        return Contribution(round_, delta, loss, cid, content_hash, gas)

    def reveal(self, job_id: int, round_: int) -> int:
        """Reveal this round's commitment, which discloses the sealed update's key; returns the
        gas used. An update not yet published is published first (late: an aggregator that
        took its snapshot without it marks it unavailable); if the store is unreachable the
        reveal is sent anyway."""
        p = self.pending[(job_id, round_)]
        # Revealed anyway: an unpublished update is reason 2 (score 0, no charge), while no
        # reveal would be reason 1 (charged).
        with contextlib.suppress(StorageUnavailable):
            self.publish(job_id, round_)
        result = self.market.reveal(
            self.account, job_id, bytes.fromhex(p.content_hash), p.cid, bytes.fromhex(p.salt)
        )
        p.revealed = True
        self.save_state()
        self.drop_outbox(job_id, round_)
        return result.gas_used

    # -- outbox: committed updates not yet published ----------------------------------------
    def _outbox_path(self, job_id: int, round_: int) -> Path | None:
        if self.state_file is None:
            return None
        return self.state_file.with_name(f"{self.state_file.stem}-job{job_id}-r{round_}.update")

    def stash(self, job_id: int, round_: int, blob: bytes) -> None:
        """Keep `blob`, the update about to be committed for `round_`, until its reveal."""
        self._outbox[(job_id, round_)] = blob
        path = self._outbox_path(job_id, round_)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, blob)

    def has_outbox(self, job_id: int, round_: int) -> bool:
        """Whether the committed update of `round_` can still be published."""
        if (job_id, round_) in self._outbox:
            return True
        path = self._outbox_path(job_id, round_)
        return path is not None and path.exists()

    def outbox(self, job_id: int, round_: int) -> bytes:
        """The committed, not yet published update of `round_`."""
        blob = self._outbox.get((job_id, round_))
        path = self._outbox_path(job_id, round_)
        if blob is None and path is not None and path.exists():
            blob = path.read_bytes()
        if blob is None or sha256_bytes(blob).hex() != self.pending[(job_id, round_)].content_hash:
            raise ConfigError(
                f"the update committed for job {job_id} round {round_} is not in the outbox"
                + (f" ({path})" if path is not None else "")
                + ": it cannot be revealed; the round will count it as not revealed"
            )
        return blob

    def drop_outbox(self, job_id: int, round_: int) -> None:
        """Forget the update of a round that is revealed (or over)."""
        self._outbox.pop((job_id, round_), None)
        path = self._outbox_path(job_id, round_)
        if path is not None:
            path.unlink(missing_ok=True)

    # -- state ----------------------------------------------------------------------------
    def _load_state(self) -> dict[tuple[int, int], PendingReveal]:
        if self.state_file is None or not self.state_file.exists():
            return {}
        raw = json.loads(self.state_file.read_text())
        return {(p["job_id"], p["round"]): PendingReveal(**p) for p in raw.get("pending", [])}

    def save_state(self) -> None:
        """Write the pending reveals to the state file (if any), atomically."""
        if self.state_file is None:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        state = {"pending": [asdict(p) for p in self.pending.values()]}
        atomic_write(self.state_file, json.dumps(state, indent=1).encode())
