// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {StakeVault} from "./StakeVault.sol";
import {ReliabilityLedger} from "./ReliabilityLedger.sol";

/// @title FedMarket
/// @notice Federated-learning marketplace: jobs with escrowed ETH rewards, staked trainers,
///         commit–reveal rounds, batched per-round score posts by the job's aggregator,
///         slashing of proven misbehaviour, proportional settlement and pull claims.
/// @dev See contracts/SPEC.md for the full interface. Invariants (checked by the test suite):
///  (I1) address(this).balance == Σ vault balances
///                              + Σ over jobs (reward + slashedPool − paid out of that job).
///  (I2) For a settled/abandoned/cancelled job: Σ reward_i + ownerRefund == reward + slashedPool,
///       with reward_i = floor(rewardPool * total_i / totalScore) and ownerRefund taking every
///       rounding remainder, so the contract can never pay out more than a job holds.
///  (I3) Every participant and the owner can be paid at most once per job (claimed flags are
///       set before any transfer; claim/claimRefund/withdraw are also nonReentrant).
///  (I4) A participant's lockedStake is part of its vault `locked` until it claims, so stake
///       locked in an unsettled job can never be withdrawn; slashing lowers both by the same
///       amount and moves it into the job's slashedPool.
///  (I5) Job status only moves forward along the state machine in SPEC.md; every loop is
///       bounded by MAX_TRAINERS (256).
contract FedMarket is ReentrancyGuard, StakeVault, ReliabilityLedger {
    // ------------------------------------------------------------------ constants

    /// @notice Fixed-point one for scores (1e6 = 1.0).
    uint64 public constant SCORE_ONE = 1e6;
    /// @notice Largest score a trainer may receive in one round.
    uint64 public constant MAX_ROUND_SCORE = 1e12;
    /// @notice Largest number of trainers per job (bounds every loop).
    uint32 public constant MAX_TRAINERS = 256;
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
    uint8 internal constant FIRST_SLASHABLE_REASON = 3;
    uint8 internal constant MAX_REASON = 11;

    uint16 internal constant BPS = 10_000;
    /// @notice After the join deadline, how long only the owner may cancel a job that has
    ///         enough trainers to start (so nobody can race the owner's `start`).
    uint64 public constant CANCEL_GRACE = 1 days;
    /// @notice Longest a job may run: joinDuration + rounds × (commit + reveal + post). It bounds
    ///         how long a trainer's stake can stay locked in one job.
    uint256 public constant MAX_JOB_DURATION = 365 days;

    // ------------------------------------------------------------------ types

    /// @notice Parameters of `createJob`.
    struct JobParams {
        address aggregator;
        uint96 stakeRequired;
        uint32 rounds;
        uint32 minTrainers;
        uint32 maxTrainers;
        uint32 joinDuration;
        uint32 commitDuration;
        uint32 revealDuration;
        uint32 postDuration;
        uint32 minReliabilityPpm;
        uint16 slashBps;
        bytes32 specHash;
        string specCid;
        bytes32 initialModelHash;
        string initialModelCid;
        bytes32 validationCommitment;
    }

    /// @dev Storage layout, 8 slots, packed on purpose (bits in brackets).
    struct Job {
        // slot 0 [160+32+32+8+16+8 = 256]: read by every job call
        address owner;
        uint32 rounds;
        uint32 currentRound;
        uint8 status;
        uint16 slashBps;
        bool refundClaimed;
        // slot 1 [160+96 = 256]
        address aggregator;
        uint96 stakeRequired;
        // slot 2 [96+96+16+16+8 = 232]: trainer bounds <= MAX_TRAINERS fit in uint16
        uint96 reward;
        uint96 slashedPool;
        uint16 minTrainers;
        uint16 maxTrainers;
        bool validationRevealed;
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
        // slot 5 [64+96+96 = 256]: settlement
        uint64 maxTotalScore;
        uint96 rewardPool;
        uint96 ownerRefund;
        // slots 6, 7
        bytes32 modelHash;
        bytes32 validationCommitment;
    }

    /// @notice Everything `getJob` returns: every Job field plus the participant count.
    struct JobView {
        address owner;
        uint32 rounds;
        uint32 currentRound;
        uint8 status;
        uint16 slashBps;
        bool refundClaimed;
        bool validationRevealed;
        address aggregator;
        uint96 stakeRequired;
        uint96 reward;
        uint96 slashedPool;
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
        uint64 joinDeadline;
        uint32 minReliabilityPpm;
        uint64 totalScore;
        uint64 maxTotalScore;
        uint96 rewardPool;
        uint96 ownerRefund;
        bytes32 modelHash;
        bytes32 validationCommitment;
        uint32 participantCount;
    }

    /// @notice Per (job, trainer) state; one storage slot [96+64+32+32+16+8+8 = 256].
    struct Participant {
        uint96 lockedStake;
        uint64 totalScore;
        uint32 lastCommitRound;
        uint32 lastRevealRound;
        uint16 flaggedRounds;
        bool claimed;
        bool joined;
    }

    // ------------------------------------------------------------------ storage

    /// @notice Id the next `createJob` will return (ids start at 1).
    uint256 public nextJobId = 1;

    mapping(uint256 => Job) internal _jobs;
    mapping(uint256 => address[]) internal _trainers; // join order
    mapping(uint256 => mapping(address => Participant)) internal _participants;
    mapping(uint256 => mapping(address => bytes32)) internal _commitments;

    // ------------------------------------------------------------------ events

    /// @notice A job was created with `reward` wei escrowed.
    event JobCreated(
        uint256 indexed jobId,
        address indexed owner,
        address indexed aggregator,
        uint256 reward,
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
    /// @notice Phase boundaries of a round were set (at open or at an early close).
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
    /// @notice The aggregator posted a round: new global model and per-trainer scores/reasons
    ///         in participant (join) order.
    event RoundPosted(
        uint256 indexed jobId,
        uint32 indexed round,
        bytes32 modelHash,
        string modelCid,
        uint64[] scores,
        uint8[] reasons
    );
    /// @notice The last round was posted.
    event JobFinished(uint256 indexed jobId);
    /// @notice The aggregator missed a deadline; trainers are paid for the posted rounds.
    event JobAbandoned(
        uint256 indexed jobId, uint32 postedRounds, uint256 rewardPool, uint256 ownerRefund
    );
    /// @notice A finished job was settled.
    event JobFinalized(
        uint256 indexed jobId, uint256 rewardPool, uint256 totalScore, uint256 ownerRefund
    );
    /// @notice A participant claimed its reward and unlocked its remaining stake.
    event RewardClaimed(
        uint256 indexed jobId, address indexed trainer, uint256 reward, uint256 stakeUnlocked
    );
    /// @notice The owner claimed the unused reward.
    event RefundClaimed(uint256 indexed jobId, address indexed owner, uint256 amount);
    /// @notice The owner revealed the committed validation set.
    event ValidationRevealed(uint256 indexed jobId, bytes32 contentHash, string cid);

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
    error ReliabilityTooLow(uint32 have, uint32 need);
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
    error AlreadyRevealedValidation(uint256 jobId);
    error OwnerIsAggregator(address owner);
    error JobTooLong(uint256 duration, uint256 maxDuration);
    error StartTooLate(uint256 jobId, uint64 startDeadline);
    error ConflictOfInterest(uint256 jobId, address account);

    /// @param alphaPpm EMA weight of the newest job in reliability scores, ppm (<= 1e6).
    constructor(uint32 alphaPpm) ReliabilityLedger(alphaPpm) {}

    // ------------------------------------------------------------------ job lifecycle

    /// @notice Create a job escrowing `msg.value` wei as its reward.
    /// @param p Job parameters (see JobParams / SPEC.md).
    /// @return jobId The new job's id.
    function createJob(JobParams calldata p) external payable returns (uint256 jobId) {
        _checkAmount(msg.value);
        if (p.aggregator == address(0)) revert ZeroAddress();
        // An owner scoring its own job could flag honest trainers and keep their stakes.
        if (p.aggregator == msg.sender) revert OwnerIsAggregator(msg.sender);
        if (p.rounds == 0 || p.rounds > MAX_ROUNDS) revert InvalidRounds(p.rounds);
        if (p.minTrainers == 0 || p.minTrainers > p.maxTrainers || p.maxTrainers > MAX_TRAINERS)
        {
            revert InvalidTrainerBounds(p.minTrainers, p.maxTrainers);
        }
        if (
            p.joinDuration == 0 || p.commitDuration == 0 || p.revealDuration == 0
                || p.postDuration == 0
        ) revert InvalidDuration();
        uint256 span = uint256(p.joinDuration)
            + uint256(p.rounds) * (uint256(p.commitDuration) + p.revealDuration + p.postDuration);
        if (span > MAX_JOB_DURATION) revert JobTooLong(span, MAX_JOB_DURATION);
        if (p.slashBps > BPS) revert InvalidSlashBps(p.slashBps);
        if (p.minReliabilityPpm > PPM) revert InvalidReliability(p.minReliabilityPpm);

        jobId = nextJobId++;
        Job storage j = _jobs[jobId];
        j.owner = msg.sender;
        j.rounds = p.rounds;
        j.status = STATUS_CREATED;
        j.slashBps = p.slashBps;
        j.aggregator = p.aggregator;
        j.stakeRequired = p.stakeRequired;
        j.reward = uint96(msg.value); // <= uint96 max, checked above
        j.minTrainers = uint16(p.minTrainers); // <= MAX_TRAINERS, checked above
        j.maxTrainers = uint16(p.maxTrainers);
        j.commitDuration = p.commitDuration;
        j.revealDuration = p.revealDuration;
        j.postDuration = p.postDuration;
        j.joinDeadline = uint64(block.timestamp) + p.joinDuration;
        j.minReliabilityPpm = p.minReliabilityPpm;
        j.modelHash = p.initialModelHash;
        j.validationCommitment = p.validationCommitment;
        emit JobCreated(jobId, msg.sender, p.aggregator, msg.value, p);
    }

    /// @notice Join job `jobId`, locking its `stakeRequired` from the caller's free stake.
    ///         The job starts automatically when it reaches `maxTrainers`.
    /// @param jobId Job to join.
    function join(uint256 jobId) external {
        Job storage j = _jobs[jobId];
        uint8 status = j.status;
        if (status == STATUS_NONE) revert UnknownJob(jobId);
        if (status != STATUS_CREATED) revert WrongStatus(jobId, status);
        if (!_accounts[msg.sender].registered) revert NotRegistered(msg.sender);
        // The owner and the aggregator must not be paid as trainers of the job they judge.
        if (msg.sender == j.owner || msg.sender == j.aggregator) {
            revert ConflictOfInterest(jobId, msg.sender);
        }
        Participant storage p = _participants[jobId][msg.sender];
        if (p.joined) revert AlreadyJoined(jobId, msg.sender);
        address[] storage trainers = _trainers[jobId];
        uint256 n = trainers.length;
        uint16 maxTrainers = j.maxTrainers;
        // Unreachable while auto-start at maxTrainers holds; kept as a defensive bound.
        if (n >= maxTrainers) revert JobFull(jobId);
        if (block.timestamp > j.joinDeadline) revert JoinClosed(jobId);
        uint32 have = _reliability[msg.sender].ppm;
        if (have < j.minReliabilityPpm) revert ReliabilityTooLow(have, j.minReliabilityPpm);

        uint96 stake = j.stakeRequired;
        _lockStake(msg.sender, stake);
        p.lockedStake = stake;
        p.joined = true;
        // Pushed through the mapping (not the local pointer) so static analysers see the write.
        _trainers[jobId].push(msg.sender);
        emit TrainerJoined(jobId, msg.sender, stake);
        if (n + 1 == maxTrainers) _start(jobId, j, uint32(n + 1));
    }

    /// @notice Start job `jobId` (owner only) once at least `minTrainers` joined; opens round 1.
    ///         Possible until `CANCEL_GRACE` after the join deadline: later, trainers who joined
    ///         may have moved on, and anyone may cancel instead.
    /// @param jobId Job to start.
    function start(uint256 jobId) external {
        Job storage j = _jobs[jobId];
        if (msg.sender != j.owner) revert NotOwner(jobId, msg.sender);
        if (j.status != STATUS_CREATED) revert WrongStatus(jobId, j.status);
        uint64 startDeadline = j.joinDeadline + CANCEL_GRACE;
        if (block.timestamp > startDeadline) revert StartTooLate(jobId, startDeadline);
        uint32 n = uint32(_trainers[jobId].length);
        if (n < j.minTrainers) revert NotEnoughTrainers(n, j.minTrainers);
        _start(jobId, j, n);
    }

    /// @notice Cancel a job that has not started: the owner at any time; anyone after the join
    ///         deadline if too few trainers joined to start it, else only after a further
    ///         `CANCEL_GRACE` (the owner's time to `start`). The owner can then reclaim the full
    ///         reward; trainers unlock via `claim`.
    /// @param jobId Job to cancel.
    function cancel(uint256 jobId) external {
        Job storage j = _jobs[jobId];
        if (j.status != STATUS_CREATED) revert WrongStatus(jobId, j.status);
        if (msg.sender != j.owner) {
            bool startable = _trainers[jobId].length >= j.minTrainers;
            uint64 openUntil = j.joinDeadline + (startable ? CANCEL_GRACE : 0);
            if (block.timestamp <= openUntil) revert NotOwner(jobId, msg.sender);
        }
        j.status = STATUS_CANCELLED;
        j.ownerRefund = j.reward;
        emit JobCancelled(jobId);
    }

    // ------------------------------------------------------------------ rounds

    /// @notice Commit to this round's update: `commitment = keccak256(abi.encode(contentHash,
    ///         cid, salt, trainer, jobId, round))`. Closes the commit phase early when the last
    ///         participant commits.
    /// @param jobId Job.
    /// @param commitment Commitment hash.
    function commit(uint256 jobId, bytes32 commitment) external {
        Participant storage p = _participants[jobId][msg.sender];
        if (!p.joined) revert NotParticipant(jobId, msg.sender);
        Job storage j = _jobs[jobId];
        if (j.status != STATUS_RUNNING) revert WrongStatus(jobId, j.status);
        uint32 round = j.currentRound;
        if (block.timestamp >= j.commitEnd) revert NotInCommitPhase(jobId, round);
        if (p.lastCommitRound == round) revert AlreadyCommitted(jobId, round, msg.sender);

        p.lastCommitRound = round;
        _commitments[jobId][msg.sender] = commitment;
        uint32 commits = j.commits + 1;
        j.commits = commits;
        emit UpdateCommitted(jobId, round, msg.sender, commitment);
        if (commits == _trainers[jobId].length) {
            uint64 nowTs = uint64(block.timestamp);
            uint64 revealEnd = nowTs + j.revealDuration;
            uint64 postDeadline = revealEnd + j.postDuration;
            j.commitEnd = nowTs;
            j.revealEnd = revealEnd;
            j.postDeadline = postDeadline;
            emit RoundScheduled(jobId, round, nowTs, revealEnd, postDeadline);
        }
    }

    /// @notice Reveal the update committed this round. Closes the reveal phase early when every
    ///         committed trainer has revealed.
    /// @param jobId Job.
    /// @param contentHash sha256 of the update blob.
    /// @param cid Storage address of the blob.
    /// @param salt Salt used in the commitment.
    function reveal(uint256 jobId, bytes32 contentHash, string calldata cid, bytes32 salt)
        external
    {
        Participant storage p = _participants[jobId][msg.sender];
        if (!p.joined) revert NotParticipant(jobId, msg.sender);
        Job storage j = _jobs[jobId];
        if (j.status != STATUS_RUNNING) revert WrongStatus(jobId, j.status);
        uint32 round = j.currentRound;
        if (block.timestamp < j.commitEnd || block.timestamp >= j.revealEnd) {
            revert NotInRevealPhase(jobId, round);
        }
        if (p.lastCommitRound != round) revert NothingCommitted(jobId, round, msg.sender);
        if (p.lastRevealRound == round) revert AlreadyRevealed(jobId, round, msg.sender);
        bytes32 expected = keccak256(abi.encode(contentHash, cid, salt, msg.sender, jobId, round));
        if (expected != _commitments[jobId][msg.sender]) {
            revert CommitmentMismatch(jobId, round, msg.sender);
        }

        p.lastRevealRound = round;
        uint32 reveals = j.reveals + 1;
        j.reveals = reveals;
        emit UpdateRevealed(jobId, round, msg.sender, contentHash, cid);
        if (reveals == j.commits) {
            // Reveals only happen after the commit phase, so everyone who could reveal did.
            uint64 nowTs = uint64(block.timestamp);
            uint64 postDeadline = nowTs + j.postDuration;
            j.revealEnd = nowTs;
            j.postDeadline = postDeadline;
            emit RoundScheduled(jobId, round, j.commitEnd, nowTs, postDeadline);
        }
    }

    /// @notice Post round `round`'s results (aggregator only), one entry per participant in
    ///         join order, and the new global model. Slashes flagged trainers, then opens the next
    ///         round or finishes the job.
    /// @param jobId Job.
    /// @param round Round being posted (must be the current one).
    /// @param modelHash_ sha256 of the new global model.
    /// @param modelCid Storage address of the new global model.
    /// @param scores Per-trainer score (1e6 = 1.0, <= MAX_ROUND_SCORE).
    /// @param reasons Per-trainer reason code (0 accepted, 1..11 see SPEC.md).
    function postRound(
        uint256 jobId,
        uint32 round,
        bytes32 modelHash_,
        string calldata modelCid,
        uint64[] calldata scores,
        uint8[] calldata reasons
    ) external {
        Job storage j = _checkPostable(jobId, round);
        _applyBatch(jobId, round, j, scores, reasons);
        emit RoundPosted(jobId, round, modelHash_, modelCid, scores, reasons);
        _advanceRound(jobId, j, modelHash_);
    }

    /// @notice Abandon a running job whose aggregator missed the post deadline (anyone).
    ///         Trainers are paid for the posted rounds, and the posted rounds' contributions
    ///         update reliability (so skipping the last post shields no one).
    /// @param jobId Job.
    function abandon(uint256 jobId) external {
        Job storage j = _jobs[jobId];
        if (j.status != STATUS_RUNNING) revert WrongStatus(jobId, j.status);
        uint64 deadline = j.postDeadline;
        if (block.timestamp <= deadline) revert DeadlineNotPassed(jobId, deadline);
        uint32 posted = j.currentRound - 1;
        uint96 earned = uint96(uint256(j.reward) * posted / j.rounds);
        j.status = STATUS_ABANDONED;
        (uint96 pool, uint96 refund) = _settle(jobId, j, earned, posted != 0);
        emit JobAbandoned(jobId, posted, pool, refund);
    }

    /// @notice Settle a finished job (anyone): fix the reward pool and owner refund, and fold
    ///         each participant's contribution into its reliability.
    /// @param jobId Job.
    function finalize(uint256 jobId) external {
        Job storage j = _jobs[jobId];
        if (j.status != STATUS_FINISHED) revert WrongStatus(jobId, j.status);
        j.status = STATUS_SETTLED;
        (uint96 pool, uint96 refund) = _settle(jobId, j, j.reward, true);
        emit JobFinalized(jobId, pool, j.totalScore, refund);
    }

    // ------------------------------------------------------------------ payouts

    /// @notice Claim reward and unlock remaining stake for job `jobId` (participant, once,
    ///         after settlement, abandonment or cancellation).
    /// @param jobId Job.
    function claim(uint256 jobId) external nonReentrant {
        Participant storage p = _participants[jobId][msg.sender];
        if (!p.joined) revert NotParticipant(jobId, msg.sender);
        Job storage j = _jobs[jobId];
        if (j.status < STATUS_SETTLED) revert WrongStatus(jobId, j.status);
        if (p.claimed) revert AlreadyClaimed(jobId, msg.sender);

        uint256 reward = _rewardOf(j, p);
        uint96 unlocked = p.lockedStake;
        p.claimed = true;
        p.lockedStake = 0;
        if (unlocked != 0) _unlockStake(msg.sender, unlocked);
        emit RewardClaimed(jobId, msg.sender, reward, unlocked);
        if (reward != 0) {
            (bool ok,) = payable(msg.sender).call{value: reward}("");
            if (!ok) revert TransferFailed(msg.sender, reward);
        }
    }

    /// @notice Claim the owner's refund of job `jobId` (owner, once).
    /// @param jobId Job.
    function claimRefund(uint256 jobId) external nonReentrant {
        Job storage j = _jobs[jobId];
        if (msg.sender != j.owner) revert NotOwner(jobId, msg.sender);
        if (j.status < STATUS_SETTLED) revert WrongStatus(jobId, j.status);
        if (j.refundClaimed) revert AlreadyClaimed(jobId, msg.sender);
        uint256 amount = j.ownerRefund;
        j.refundClaimed = true;
        emit RefundClaimed(jobId, msg.sender, amount);
        if (amount != 0) {
            (bool ok,) = payable(msg.sender).call{value: amount}("");
            if (!ok) revert TransferFailed(msg.sender, amount);
        }
    }

    /// @notice Reveal the validation set committed at creation (owner, once, after the job
    ///         settled or was abandoned): `keccak256(abi.encode(contentHash, cid))` must match.
    /// @param jobId Job.
    /// @param contentHash sha256 of the validation set.
    /// @param cid Storage address of the validation set.
    function revealValidation(uint256 jobId, bytes32 contentHash, string calldata cid) external {
        Job storage j = _jobs[jobId];
        if (msg.sender != j.owner) revert NotOwner(jobId, msg.sender);
        uint8 status = j.status;
        if (status != STATUS_SETTLED && status != STATUS_ABANDONED) {
            revert WrongStatus(jobId, status);
        }
        if (j.validationRevealed) revert AlreadyRevealedValidation(jobId);
        if (keccak256(abi.encode(contentHash, cid)) != j.validationCommitment) {
            revert ValidationMismatch(jobId);
        }
        j.validationRevealed = true;
        emit ValidationRevealed(jobId, contentHash, cid);
    }

    // ------------------------------------------------------------------ views

    /// @notice Full state of job `jobId` (all zero for an unknown id).
    /// @param jobId Job.
    /// @return v Every Job field plus the participant count.
    function getJob(uint256 jobId) external view returns (JobView memory v) {
        Job storage j = _jobs[jobId];
        v.owner = j.owner;
        v.rounds = j.rounds;
        v.currentRound = j.currentRound;
        v.status = j.status;
        v.slashBps = j.slashBps;
        v.refundClaimed = j.refundClaimed;
        v.validationRevealed = j.validationRevealed;
        v.aggregator = j.aggregator;
        v.stakeRequired = j.stakeRequired;
        v.reward = j.reward;
        v.slashedPool = j.slashedPool;
        v.minTrainers = j.minTrainers;
        v.maxTrainers = j.maxTrainers;
        v.commitEnd = j.commitEnd;
        v.revealEnd = j.revealEnd;
        v.postDeadline = j.postDeadline;
        v.commits = j.commits;
        v.reveals = j.reveals;
        v.commitDuration = j.commitDuration;
        v.revealDuration = j.revealDuration;
        v.postDuration = j.postDuration;
        v.joinDeadline = j.joinDeadline;
        v.minReliabilityPpm = j.minReliabilityPpm;
        v.totalScore = j.totalScore;
        v.maxTotalScore = j.maxTotalScore;
        v.rewardPool = j.rewardPool;
        v.ownerRefund = j.ownerRefund;
        v.modelHash = j.modelHash;
        v.validationCommitment = j.validationCommitment;
        v.participantCount = uint32(_trainers[jobId].length);
    }

    /// @notice Participants of job `jobId` in join order (the order of postRound arrays).
    /// @param jobId Job.
    /// @return Trainer addresses.
    function participantsOf(uint256 jobId) external view returns (address[] memory) {
        return _trainers[jobId];
    }

    /// @notice State of `trainer` in job `jobId`.
    /// @param jobId Job.
    /// @param trainer Trainer.
    /// @return Participant record (all zero if the trainer never joined).
    function participantOf(uint256 jobId, address trainer)
        external
        view
        returns (Participant memory)
    {
        return _participants[jobId][trainer];
    }

    /// @notice Latest commitment of `trainer` in job `jobId`.
    /// @param jobId Job.
    /// @param trainer Trainer.
    /// @return Commitment hash (zero if none).
    function commitmentOf(uint256 jobId, address trainer) external view returns (bytes32) {
        return _commitments[jobId][trainer];
    }

    /// @notice What `claim` would pay `trainer` now (0 before settlement or after claiming).
    /// @param jobId Job.
    /// @param trainer Trainer.
    /// @return Reward in wei.
    function rewardOf(uint256 jobId, address trainer) external view returns (uint256) {
        Participant storage p = _participants[jobId][trainer];
        if (p.claimed) return 0;
        return _rewardOf(_jobs[jobId], p);
    }

    /// @notice Phase of job `jobId`: 0 not running · 1 commit · 2 reveal · 3 awaiting post ·
    ///         4 overdue (abandonable).
    /// @param jobId Job.
    /// @return Phase code.
    function phaseOf(uint256 jobId) external view returns (uint8) {
        Job storage j = _jobs[jobId];
        if (j.status != STATUS_RUNNING) return 0;
        if (block.timestamp < j.commitEnd) return 1;
        if (block.timestamp < j.revealEnd) return 2;
        if (block.timestamp <= j.postDeadline) return 3;
        return 4;
    }

    // ------------------------------------------------------------------ internals

    function _start(uint256 jobId, Job storage j, uint32 n) internal {
        j.status = STATUS_RUNNING;
        j.currentRound = 1;
        emit JobStarted(jobId, n);
        _openRound(jobId, j, 1);
    }

    function _openRound(uint256 jobId, Job storage j, uint32 round) internal {
        uint64 commitEnd = uint64(block.timestamp) + j.commitDuration;
        uint64 revealEnd = commitEnd + j.revealDuration;
        uint64 postDeadline = revealEnd + j.postDuration;
        j.commitEnd = commitEnd;
        j.revealEnd = revealEnd;
        j.postDeadline = postDeadline;
        j.commits = 0;
        j.reveals = 0;
        emit RoundScheduled(jobId, round, commitEnd, revealEnd, postDeadline);
    }

    /// @dev Shared checks of every post entry point: aggregator, status, round, timing.
    ///      Phase checks compare block.timestamp with deadlines minutes apart; the few seconds
    ///      a block producer can skew a timestamp do not matter here (slither: timestamp, ok).
    function _checkPostable(uint256 jobId, uint32 round) internal view returns (Job storage j) {
        j = _jobs[jobId];
        if (msg.sender != j.aggregator) revert NotAggregator(jobId, msg.sender);
        if (j.status != STATUS_RUNNING) revert WrongStatus(jobId, j.status);
        uint32 current = j.currentRound;
        if (round != current) revert WrongRound(current, round);
        if (block.timestamp < j.revealEnd) revert RevealPhaseOpen(jobId, round);
        if (block.timestamp > j.postDeadline) revert PostDeadlinePassed(jobId, round);
    }

    /// @dev Apply a whole round's results (participant order), then write the job totals once.
    function _applyBatch(
        uint256 jobId,
        uint32 round,
        Job storage j,
        uint64[] calldata scores,
        uint8[] calldata reasons
    ) internal {
        address[] storage trainers = _trainers[jobId];
        uint256 n = trainers.length;
        if (scores.length != n || reasons.length != n) {
            revert LengthMismatch(n, scores.length, reasons.length);
        }
        uint64 jobTotal = j.totalScore;
        uint64 maxTotal = j.maxTotalScore;
        for (uint256 i; i < n; ++i) {
            uint64 score = scores[i];
            uint64 total = _applyResult(jobId, round, trainers[i], score, reasons[i]);
            jobTotal += score;
            if (total > maxTotal) maxTotal = total;
        }
        j.totalScore = jobTotal;
        j.maxTotalScore = maxTotal;
    }

    /// @dev Validate and apply one trainer's result for `round`. Shared by every post entry
    ///      point. Returns the trainer's new running total. Slashed wei moves from the vault
    ///      into the job's slashedPool here (only flagged trainers pay for that write).
    function _applyResult(
        uint256 jobId,
        uint32 round,
        address trainer,
        uint64 score,
        uint8 reason
    ) internal returns (uint64 total) {
        if (reason > MAX_REASON) revert UnknownReason(reason);
        if (score > MAX_ROUND_SCORE) revert ScoreTooLarge(score);
        Participant storage p = _participants[jobId][trainer];
        bool revealed = p.lastRevealRound == round;
        if (
            (revealed ? reason == REASON_MISSING : reason != REASON_MISSING)
                || (reason != REASON_ACCEPTED && score != 0)
        ) revert InvalidResult(trainer, score, reason);
        total = p.totalScore;
        if (score != 0) {
            total += score;
            p.totalScore = total;
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

    /// @dev Record the new model, then finish the job or open the next round.
    function _advanceRound(uint256 jobId, Job storage j, bytes32 modelHash_) internal {
        j.modelHash = modelHash_;
        uint32 round = j.currentRound;
        if (round == j.rounds) {
            j.status = STATUS_FINISHED;
            emit JobFinished(jobId);
        } else {
            j.currentRound = round + 1;
            _openRound(jobId, j, round + 1);
        }
    }

    /// @dev Fix the reward pool (`earned` reward + every slashed wei) and the owner's refund,
    ///      and, if `recordReliability`, fold each participant's contribution into its
    ///      reliability. Slashed stake never flows back to the owner: the refund is what the
    ///      payouts leave, capped at the reward (dust above the cap is burned too); with no
    ///      contribution at all (total score 0) the slashed stake stays locked in the contract
    ///      for good (`SlashedStakeBurned`), so no party profits from the flags it posts.
    function _settle(uint256 jobId, Job storage j, uint96 earned, bool recordReliability)
        internal
        returns (uint96 pool, uint96 refund)
    {
        uint96 reward = j.reward;
        pool = earned + j.slashedPool;
        uint64 total = j.totalScore;
        uint64 maxTotal = j.maxTotalScore;
        address[] storage trainers = _trainers[jobId];
        uint256 n = trainers.length;
        uint256 paid = 0;
        for (uint256 i; i < n; ++i) {
            address t = trainers[i];
            uint64 ti = _participants[jobId][t].totalScore;
            if (total != 0) paid += uint256(pool) * ti / total;
            if (recordReliability) {
                _recordContribution(t, jobId, maxTotal == 0 ? 0 : uint32(uint256(ti) * PPM / maxTotal));
            }
        }
        uint256 left = uint256(pool) - paid; // Σ floor(pool * t_i / total) <= pool
        uint256 unearned = uint256(reward) - earned;
        uint256 refundable = total == 0 ? unearned + earned : unearned + left;
        refund = uint96(refundable < reward ? refundable : reward);
        uint256 burned = left + unearned - refund;
        j.rewardPool = pool;
        j.ownerRefund = refund;
        if (burned != 0) emit SlashedStakeBurned(jobId, burned);
    }

    /// @dev Reward of participant `p` given the job's settlement (0 unless settled/abandoned).
    function _rewardOf(Job storage j, Participant storage p) internal view returns (uint256) {
        uint8 status = j.status;
        uint64 total = j.totalScore;
        if ((status != STATUS_SETTLED && status != STATUS_ABANDONED) || total == 0) return 0;
        return uint256(j.rewardPool) * p.totalScore / total;
    }
}
