// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {StakeVault} from "./StakeVault.sol";
import {ReliabilityRegistry} from "./ReliabilityRegistry.sol";

/// @title FedMarketBase
/// @notice What the market (`FedMarket`) and its settlement module (`FedMarketSettlement`)
///         share: constants, types, storage layout, events, errors and the result rules both
///         apply. The module runs by delegatecall on the market's storage, so both inherit
///         this one layout. See FedMarket for the contract's description and invariants.
abstract contract FedMarketBase is StakeVault {
    // ------------------------------------------------------------------ constants

    /// @notice Fixed-point one for scores (1e6 = 1.0).
    uint64 public constant SCORE_ONE = 1e6;
    /// @notice Largest score a trainer may receive in one round.
    uint64 public constant MAX_ROUND_SCORE = 1e12;
    /// @notice Largest number of trainers per job (bounds every loop).
    uint32 public constant MAX_TRAINERS = 1024;
    /// @notice Most settlement steps one `settle` call runs (a step: one trainer in one pass).
    uint32 public constant MAX_SETTLE_STEPS = 512;
    /// @dev A job of up to this many trainers settles inside the transaction that ends it.
    uint256 internal constant INLINE_SETTLE_TRAINERS = 256;
    /// @dev `settleCursor` of a job whose settlement is complete.
    uint16 internal constant SETTLE_DONE = type(uint16).max;
    /// @notice Largest number of rounds per job.
    uint32 public constant MAX_ROUNDS = 1000;

    uint8 internal constant STATUS_NONE = 0;
    uint8 internal constant STATUS_CREATED = 1;
    uint8 internal constant STATUS_RUNNING = 2;
    uint8 internal constant STATUS_FINISHED = 3;
    uint8 internal constant STATUS_SETTLED = 4;
    uint8 internal constant STATUS_ABANDONED = 5;
    uint8 internal constant STATUS_CANCELLED = 6;

    uint8 internal constant REASON_ACCEPTED = 0;
    uint8 internal constant REASON_MISSING = 1;
    uint8 internal constant REASON_UNAVAILABLE = 2;
    uint8 internal constant FIRST_SLASHABLE_REASON = 3;
    uint8 internal constant MAX_REASON = 11;

    uint16 internal constant BPS = 10_000;
    uint32 internal constant PPM = 1_000_000;
    /// @notice After the join deadline, how long only the owner may cancel a job that has
    ///         enough trainers to start (so nobody can race the owner's `start`).
    uint64 public constant CANCEL_GRACE = 1 days;
    /// @notice Longest a job may run: joinDuration + rounds × (commit + reveal + post +
    ///         challengeWindow). It bounds how long a trainer's stake can stay locked in one job.
    uint256 public constant MAX_JOB_DURATION = 365 days;

    /// @notice Cross-job reliability of trainers, deployed by the market (its only writer).
    ReliabilityRegistry public immutable reliability;

    // ------------------------------------------------------------------ types

    /// @notice Parameters of `createJob`.
    struct JobParams {
        address aggregator;
        uint96 stakeRequired;
        uint96 aggregatorBond; // 0: the default, equal to the reward
        uint32 rounds;
        uint32 minTrainers;
        uint32 maxTrainers;
        uint32 joinDuration;
        uint32 commitDuration;
        uint32 revealDuration;
        uint32 postDuration;
        uint32 challengeWindow;
        uint32 minReliabilityPpm;
        uint128 minReliabilityWeight; // confidence a trainer's reliability must rest on, wei
        uint16 slashBps;
        bytes32 specHash;
        string specCid;
        bytes32 initialModelHash;
        string initialModelCid;
        bytes32 validationRoot;
    }

    /// @notice A round result as the digest covers it (see `digestOf`).
    struct RoundResult {
        bytes32 modelHash;
        uint64[] scores;
        uint8[] reasons;
    }

    /// @dev Storage layout, packed on purpose (bits in brackets).
    struct Job {
        // slot 0 [160+32+32+8+16+8 = 256]: read by every job call
        address owner;
        uint32 rounds;
        uint32 currentRound;
        uint8 status;
        uint16 slashBps;
        bool disputeOpen;
        // slot 1 [160+96 = 256]
        address aggregator;
        uint96 stakeRequired;
        // slot 2 [96+96+16+16+32 = 256]
        uint96 reward;
        uint96 aggregatorBond;
        uint16 minTrainers;
        uint16 maxTrainers;
        uint32 challengeWindow;
        // slot 3 [64*3+32*2 = 256]: round timing, rewritten at every round open
        uint64 commitEnd;
        uint64 revealEnd;
        uint64 postDeadline;
        uint32 commits;
        uint32 reveals;
        // slot 4 [32*3+64+32+64 = 256]
        uint32 commitDuration;
        uint32 revealDuration;
        uint32 postDuration;
        uint64 joinDeadline;
        uint32 minReliabilityPpm;
        uint64 totalScore;
        // slot 5 [32+64+64+64+8+8+16 = 256]: the pending round, written by every post
        uint32 pendingRound;
        uint64 postedAt;
        uint64 finalAt; // 0 until the round's validation chunk is revealed
        uint64 maxTotalScore;
        bool refundClaimed;
        bool ownerForfeited;
        uint16 settleCursor; // settlement steps done, SETTLE_DONE once complete
        // slots 6, 7: 256-bit sums never overflow (Σ stakes of 1024 trainers fits in 2^106)
        uint128 slashedPool;
        uint128 rewardPool;
        uint128 ownerRefund;
        uint128 forfeitPool; // paid in equal parts to the unposted round's revealers
        // slots 8..10
        bytes32 modelHash;
        bytes32 validationRoot;
        bytes32 pendingDigest;
        // slot 11
        uint128 minReliabilityWeight;
        uint128 settledPaid; // Σ rewards owed so far, kept only between `settle` calls
        // slot 12: a correction or forfeit still to be applied by `settle` (large jobs only)
        bytes32 undoKey;
    }

    /// @notice Everything `getJob` returns: every Job field plus the participant count.
    struct JobView {
        address owner;
        uint32 rounds;
        uint32 currentRound;
        uint8 status;
        uint16 slashBps;
        bool refundClaimed;
        bool disputeOpen;
        bool ownerForfeited;
        address aggregator;
        uint96 stakeRequired;
        uint96 reward;
        uint96 aggregatorBond;
        uint256 slashedPool;
        uint32 minTrainers;
        uint32 maxTrainers;
        uint64 commitEnd;
        uint64 revealEnd;
        uint64 postDeadline;
        uint32 commits;
        uint32 reveals;
        uint32 commitDuration;
        uint32 revealDuration;
        uint32 postDuration;
        uint32 challengeWindow;
        uint64 joinDeadline;
        uint32 minReliabilityPpm;
        uint128 minReliabilityWeight;
        uint64 totalScore;
        uint64 maxTotalScore;
        uint256 rewardPool;
        uint256 ownerRefund;
        uint256 forfeitPool;
        uint32 pendingRound;
        uint64 postedAt;
        uint64 finalAt;
        bytes32 modelHash;
        bytes32 validationRoot;
        bytes32 pendingDigest;
        uint32 participantCount;
    }

    /// @notice Per (job, trainer) state: one storage slot [96+64+32+32+16+8+8 = 256], and a
    ///         second one [16+16+64+8] written when a trainer misses a round (reason 1) or its
    ///         update is reported unavailable (reason 2). `join` seeds the second slot, so that
    ///         those writes never pay for a fresh slot: a post in which none of 1,000 trainers
    ///         revealed would otherwise need more than a block's gas.
    struct Participant {
        uint96 lockedStake;
        uint64 totalScore;
        uint32 lastCommitRound;
        uint32 lastRevealRound;
        uint16 flaggedRounds;
        bool claimed;
        bool joined;
        uint16 missedRounds; // posted rounds with reason 1 (charged at settlement)
        uint16 unavailableRounds; // posted rounds with reason 2 (left out of reliability)
        uint64 unavailableMaxScore; // Σ over those rounds of the round's best score
        bool seeded; // set at join (see above)
    }

    // ------------------------------------------------------------------ storage

    /// @notice Id the next `createJob` will return (ids start at 1).
    uint256 public nextJobId = 1;

    mapping(uint256 => Job) internal _jobs;
    mapping(uint256 => address[]) internal _trainers; // join order
    mapping(uint256 => mapping(address => Participant)) internal _participants;
    mapping(uint256 => mapping(address => bytes32)) internal _commitments;

    // ------------------------------------------------------------------ events

    /// @notice A job was created with `reward` wei escrowed and `aggregatorBond` wei of the
    ///         aggregator's stake locked.
    event JobCreated(
        uint256 indexed jobId,
        address indexed owner,
        address indexed aggregator,
        uint256 reward,
        uint256 aggregatorBond,
        JobParams params
    );
    /// @notice A trainer joined a job and locked `lockedStake` wei.
    event TrainerJoined(uint256 indexed jobId, address indexed trainer, uint256 lockedStake);
    /// @notice A job started with `trainers` participants.
    event JobStarted(uint256 indexed jobId, uint32 trainers);
    /// @notice A job was cancelled before it started; the owner can reclaim the reward.
    event JobCancelled(uint256 indexed jobId);
    /// @notice Slashed stake of a job that no contribution earned: it stays in the contract, owned
    ///         by no one (neither the owner nor the aggregator may profit from flags they post).
    event SlashedStakeBurned(uint256 indexed jobId, uint256 amount);
    /// @notice Phase boundaries of a round were set (at open, at an early close or an extension).
    event RoundScheduled(
        uint256 indexed jobId,
        uint32 indexed round,
        uint64 commitEnd,
        uint64 revealEnd,
        uint64 postDeadline
    );
    /// @notice A trainer committed to an update.
    event UpdateCommitted(
        uint256 indexed jobId, uint32 indexed round, address indexed trainer, bytes32 commitment
    );
    /// @notice A trainer revealed its update (sha256 `contentHash`, storage address `cid`).
    event UpdateRevealed(
        uint256 indexed jobId,
        uint32 indexed round,
        address indexed trainer,
        bytes32 contentHash,
        string cid
    );
    /// @notice A trainer was slashed `amount` wei for `reason`.
    event TrainerSlashed(
        uint256 indexed jobId,
        uint32 indexed round,
        address indexed trainer,
        uint256 amount,
        uint8 reason
    );
    /// @notice A slash of round `round` was undone by a dispute: `amount` wei back to the trainer.
    event SlashReversed(
        uint256 indexed jobId, uint32 indexed round, address indexed trainer, uint256 amount
    );
    /// @notice The aggregator posted a round: new global model and per-trainer scores/reasons
    ///         in participant (join) order. The round is pending until `RoundFinal`'s time.
    event RoundPosted(
        uint256 indexed jobId,
        uint32 indexed round,
        bytes32 modelHash,
        string modelCid,
        uint64[] scores,
        uint8[] reasons
    );
    /// @notice Round `round`'s validation chunk was revealed; the round becomes final after
    ///         `finalAt` unless challenged.
    event ValidationChunkRevealed(
        uint256 indexed jobId,
        uint32 indexed round,
        bytes32 contentHash,
        string cid,
        bytes32 salt,
        uint64 finalAt
    );
    /// @notice Round `round` was challenged; it stays pending until the court decides.
    event RoundDisputed(uint256 indexed jobId, uint32 indexed round, address indexed challenger);
    /// @notice The court upheld round `round`: it is final.
    event RoundUpheld(uint256 indexed jobId, uint32 indexed round);
    /// @notice The court overturned round `round`; this result replaced the posted one.
    event RoundCorrected(
        uint256 indexed jobId,
        uint32 indexed round,
        bytes32 modelHash,
        string modelCid,
        uint64[] scores,
        uint8[] reasons
    );
    /// @notice The aggregator's bond of job `jobId` was slashed (`amount` wei) or forfeited.
    event AggregatorBondSlashed(uint256 indexed jobId, address indexed aggregator, uint256 amount);
    /// @notice The last round was posted.
    event JobFinished(uint256 indexed jobId);
    /// @notice The job ended early: the aggregator missed a deadline or was overturned
    ///         (`ownerFault` false: its bond and the unposted round's share go to that round's
    ///         revealers), or the owner withheld a validation chunk (`ownerFault` true: the whole
    ///         reward goes to the trainers).
    event JobAbandoned(
        uint256 indexed jobId,
        uint32 postedRounds,
        uint256 rewardPool,
        uint256 ownerRefund,
        bool ownerFault
    );
    /// @notice A finished job was settled.
    event JobFinalized(
        uint256 indexed jobId, uint256 rewardPool, uint256 totalScore, uint256 ownerRefund
    );
    /// @notice `settle` ran: `done` of the `total` settlement steps of job `jobId` are complete.
    event SettlementProgress(uint256 indexed jobId, uint32 done, uint32 total);
    /// @notice A participant claimed its reward and unlocked its remaining stake.
    event RewardClaimed(
        uint256 indexed jobId, address indexed trainer, uint256 reward, uint256 stakeUnlocked
    );
    /// @notice The owner claimed the unused reward.
    event RefundClaimed(uint256 indexed jobId, address indexed owner, uint256 amount);
    /// @notice The court was bound (once).
    event CourtBound(address court);

    // ------------------------------------------------------------------ errors

    error ZeroAddress();
    error InvalidRounds(uint32 rounds);
    error InvalidTrainerBounds(uint32 min, uint32 max);
    error InvalidDuration();
    error InvalidSlashBps(uint16 bps);
    error UnknownJob(uint256 jobId);
    error WrongStatus(uint256 jobId, uint8 status);
    error AlreadyJoined(uint256 jobId, address trainer);
    error JobFull(uint256 jobId);
    error JoinClosed(uint256 jobId);
    error NotOwner(uint256 jobId, address caller);
    error NotEnoughTrainers(uint32 have, uint32 need);
    error NotParticipant(uint256 jobId, address caller);
    error NotInCommitPhase(uint256 jobId, uint32 round);
    error AlreadyCommitted(uint256 jobId, uint32 round, address trainer);
    error NotInRevealPhase(uint256 jobId, uint32 round);
    error NothingCommitted(uint256 jobId, uint32 round, address trainer);
    error AlreadyRevealed(uint256 jobId, uint32 round, address trainer);
    error CommitmentMismatch(uint256 jobId, uint32 round, address trainer);
    error NotAggregator(uint256 jobId, address caller);
    error WrongRound(uint32 expected, uint32 given);
    error RevealPhaseOpen(uint256 jobId, uint32 round);
    error PostDeadlinePassed(uint256 jobId, uint32 round);
    error LengthMismatch(uint256 expected, uint256 scores, uint256 reasons);
    error UnknownReason(uint8 reason);
    error ScoreTooLarge(uint64 score);
    error InvalidResult(address trainer, uint64 score, uint8 reason);
    error DeadlineNotPassed(uint256 jobId, uint64 postDeadline);
    error AlreadyClaimed(uint256 jobId, address account);
    error ValidationMismatch(uint256 jobId);
    error OwnerIsAggregator(address owner);
    error JobTooLong(uint256 duration, uint256 maxDuration);
    error StartTooLate(uint256 jobId, uint64 startDeadline);
    error ConflictOfInterest(uint256 jobId, address account);
    error NotAnAggregator(address account);
    error AggregatorBondTooLow(uint256 available, uint256 required);
    error ChallengeWindowTooShort(uint32 given, uint32 minimum);
    error MissingValidationRoot();
    error RoundNotFinal(uint256 jobId, uint32 round, uint64 finalAt);
    error DisputeOpen(uint256 jobId);
    error NoChunkDue(uint256 jobId, uint32 round);
    error ChunkRevealClosed(uint256 jobId, uint32 round);
    error ChallengeWindowClosed(uint256 jobId, uint32 round);
    error NotChallenger(uint256 jobId, address account);
    error DigestMismatch(bytes32 expected, bytes32 given);
    error NotCourt(address caller);
    error InvalidReliability(uint32 ppm);
    error CourtAlreadyBound();
    error NothingToSettle(uint256 jobId);
    error SettlementPending(uint256 jobId, uint32 done, uint32 total);

    /// @param reliability_ The market's reliability registry.
    constructor(ReliabilityRegistry reliability_) {
        reliability = reliability_;
    }

    // ------------------------------------------------------------------ shared rules

    /// @notice The digest a round result is judged by: what challengers and committee members
    ///         commit to. `keccak256(abi.encode(jobId, round, modelHash, scores, reasons))`.
    /// @param jobId Job.
    /// @param round Round.
    /// @param r The result (new model hash, per-participant scores and reasons in join order).
    /// @return The digest.
    function digestOf(uint256 jobId, uint32 round, RoundResult calldata r)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(jobId, round, r.modelHash, r.scores, r.reasons));
    }

    /// @dev Validate and apply one trainer's result for `round`. Shared by every post entry
    ///      point (`p` is `trainer`'s record, looked up once by the caller). Returns the
    ///      trainer's new running total. Slashed wei moves from the vault into the job's
    ///      slashedPool here (only flagged trainers pay for that write). Reason 2 (content
    ///      unavailable) has no public evidence, so it must not lower the trainer's
    ///      reliability: the round is counted in `unavailableRounds` and the round's `best`
    ///      score added to `unavailableMaxScore`, both left out of its contribution.
    function _applyResult(
        uint256 jobId,
        uint32 round,
        address trainer,
        Participant storage p,
        uint64 score,
        uint8 reason,
        bool revealed,
        uint64 best
    ) internal returns (uint64 total) {
        if (!_validEntry(score, reason, revealed)) revert InvalidResult(trainer, score, reason);
        total = p.totalScore;
        if (score != 0) {
            total += score;
            p.totalScore = total;
        }
        if (reason == REASON_MISSING) p.missedRounds += 1;
        if (reason == REASON_UNAVAILABLE) {
            p.unavailableRounds += 1;
            p.unavailableMaxScore += best;
        }
        if (reason >= FIRST_SLASHABLE_REASON) {
            uint96 locked = p.lockedStake;
            Job storage j = _jobs[jobId];
            uint96 slashed = uint96(uint256(locked) * j.slashBps / BPS);
            p.lockedStake = locked - slashed;
            p.flaggedRounds += 1;
            if (slashed != 0) {
                _slashStake(trainer, slashed);
                j.slashedPool += slashed;
            }
            emit TrainerSlashed(jobId, round, trainer, slashed, reason);
        }
    }

    /// @dev Whether (score, reason) is a valid result for a trainer that did (`revealed`) or did
    ///      not reveal: reason 1 exactly when it did not, a score only with reason 0. A reason or
    ///      score out of range reverts (`UnknownReason`, `ScoreTooLarge`).
    function _validEntry(uint64 score, uint8 reason, bool revealed) internal pure returns (bool) {
        if (reason > MAX_REASON) revert UnknownReason(reason);
        if (score > MAX_ROUND_SCORE) revert ScoreTooLarge(score);
        return (revealed ? reason != REASON_MISSING : reason == REASON_MISSING)
            && (reason == REASON_ACCEPTED || score == 0);
    }

    /// @dev The stake a participant has locked after `k` flags, for k = 0.. (`values[k]`):
    ///      the same for every participant of a job (its stake and slashBps; missed rounds
    ///      are only charged at settlement). Filled as far as needed, once per transaction, so
    ///      undoing a slash costs the same however often the trainer was flagged before.
    struct LockedTable {
        uint96[] values;
        uint256 known;
        uint16 slashBps;
    }

    /// @dev An empty table for job `j` (room for every round's flag).
    function _lockedTable(Job storage j) internal view returns (LockedTable memory t) {
        t.values = new uint96[](uint256(j.rounds) + 1);
        t.values[0] = j.stakeRequired;
        t.known = 1;
        t.slashBps = j.slashBps;
    }

    function _lockedAfter(LockedTable memory t, uint256 k) internal pure returns (uint96) {
        while (t.known <= k) {
            uint96 prev = t.values[t.known - 1];
            t.values[t.known] = prev - uint96(uint256(prev) * t.slashBps / BPS);
            t.known += 1;
        }
        return t.values[k];
    }

    /// @dev Take back one trainer's posted score, missed or unavailable round (`best`: the
    ///      posted round's best score, as `_applyResult` added it), and, if it was slashed,
    ///      give the stake back (the slash amount is recomputed: locked stake after k flags is
    ///      a pure function of the job's stake and slashBps, `table` — missed rounds are only
    ///      charged at settlement — and no later round can have been posted meanwhile).
    function _undoResult(
        uint256 jobId,
        uint32 round,
        Job storage j,
        address trainer,
        uint64 score,
        uint8 reason,
        uint64 best,
        LockedTable memory table
    ) internal {
        Participant storage p = _participants[jobId][trainer];
        if (score != 0) p.totalScore -= score;
        if (reason == REASON_MISSING) p.missedRounds -= 1;
        if (reason == REASON_UNAVAILABLE) {
            p.unavailableRounds -= 1;
            p.unavailableMaxScore -= best;
        }
        if (reason < FIRST_SLASHABLE_REASON) return;
        uint16 flags = p.flaggedRounds - 1;
        uint96 before = _lockedAfter(table, flags);
        uint96 amount = before - p.lockedStake;
        p.flaggedRounds = flags;
        p.lockedStake = before;
        if (amount != 0) {
            j.slashedPool -= amount;
            _restoreStake(trainer, amount);
        }
        emit SlashReversed(jobId, round, trainer, amount);
    }

    /// @dev Best score in a round's `scores`: what a reason-2 round is worth to the job's best
    ///      trainer, left out of the reason-2 trainer's contribution.
    function _bestOf(uint64[] calldata scores) internal pure returns (uint64 best) {
        uint256 n = scores.length;
        for (uint256 i; i < n; ++i) {
            if (scores[i] > best) best = scores[i];
        }
    }

    /// @dev The reward the posted rounds earned, and the unposted round's share reserved for
    ///      its revealers: all of it for a finished job or an owner's forfeit; for an
    ///      aggregator's failure, the posted rounds' part (reserved only if anyone revealed).
    function _earnedAndReserved(Job storage j)
        internal
        view
        returns (uint256 earned, uint256 reserved)
    {
        if (j.status == STATUS_SETTLED || j.ownerForfeited) return (j.reward, 0);
        (earned, reserved) = _shares(j, j.currentRound - 1);
        if (j.reveals == 0) reserved = 0;
    }

    /// @dev The reward of `posted` rounds, and the next round's share.
    function _shares(Job storage j, uint32 posted)
        internal
        view
        returns (uint256 earned, uint256 share)
    {
        uint256 reward = j.reward;
        earned = reward * posted / j.rounds;
        share = reward * (posted + 1) / j.rounds - earned;
    }

    /// @dev The pool the participants share: earned reward plus every slashed wei.
    function _poolOf(Job storage j) internal view returns (uint256) {
        (uint256 earned,) = _earnedAndReserved(j);
        return earned + j.slashedPool;
    }

    function _checkDigest(bytes32 expected, bytes32 given) internal pure {
        if (expected != given) revert DigestMismatch(expected, given);
    }
}
