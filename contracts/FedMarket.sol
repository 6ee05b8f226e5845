// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {StakeVault} from "./StakeVault.sol";
import {ReliabilityRegistry} from "./ReliabilityRegistry.sol";

/// @title FedMarket
/// @notice Federated-learning marketplace: jobs with escrowed ETH rewards, staked trainers,
///         bonded aggregators, commit–reveal rounds, batched per-round score posts that stay
///         pending (challengeable) for a window, per-round validation chunks revealed after each
///         post, slashing of proven misbehaviour, proportional settlement and pull claims.
///         Disputes are decided by `DisputeCourt` (the bound `court`), which may only call the
///         hooks marked "court only"; every wei stays in this contract. Trainers' cross-job
///         reliability lives in the `ReliabilityRegistry` this contract deploys (`reliability`).
/// @dev See contracts/SPEC.md for the full interface. Invariants (checked by the test suite):
///  (I1) address(this).balance == Σ vault balances (stakes and bonds)
///                              + Σ over jobs (reward + slashedPool + forfeitPool − paid out).
///  (I2) For a settled/abandoned/cancelled job: Σ paid + ownerRefund + burned
///       == reward + slashedPool + forfeitPool; the contract never pays out more than a job holds.
///  (I3) Every participant and the owner can be paid at most once per job (claimed flags are
///       set before any transfer; claim/claimRefund/withdraw are also nonReentrant).
///  (I4) A participant's lockedStake is part of its vault `locked` until it claims; a job's
///       aggregatorBond is part of the aggregator's `locked` until the job ends.
///  (I5) Job status only moves forward along the state machine in SPEC.md; every loop is
///       bounded by MAX_TRAINERS (256). At most one posted round is pending at a time.
contract FedMarket is ReentrancyGuard, StakeVault {
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

    /// @notice Shortest challenge window a job may set (seconds; fixed per deployment: short
    ///         on dev chains, hours in production).
    uint32 public immutable minChallengeWindow;
    /// @dev Who may bind the court, once.
    address private immutable _deployer;
    /// @notice The dispute court allowed to call the court-only hooks (bound once).
    address public court;
    /// @notice Cross-job reliability of trainers, deployed by this market (its only writer).
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
        // slot 5 [32+64+64+64+8+8 = 240]: the pending round, written by every post
        uint32 pendingRound;
        uint64 postedAt;
        uint64 finalAt; // 0 until the round's validation chunk is revealed
        uint64 maxTotalScore;
        bool refundClaimed;
        bool ownerForfeited;
        // slots 6, 7: 256-bit sums never overflow (Σ stakes of 256 trainers fits in 2^104)
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
    ///         second one [16+16+64] written only when a trainer misses a round (reason 1) or
    ///         its update is reported unavailable (reason 2).
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

    /// @param alphaPpm Weight of the newest job in reliability scores, ppm (<= 1e6); the
    ///        market deploys its `ReliabilityRegistry` with it.
    /// @param minChallengeWindow_ Shortest challenge window a job may set, seconds.
    constructor(uint32 alphaPpm, uint32 minChallengeWindow_) {
        minChallengeWindow = minChallengeWindow_;
        _deployer = msg.sender;
        reliability = new ReliabilityRegistry(alphaPpm);
    }

    /// @notice Bind the dispute court (deployer only, once): the only caller of the court hooks.
    /// @param court_ DisputeCourt address.
    function bindCourt(address court_) external {
        if (msg.sender != _deployer) revert NotCourt(msg.sender);
        if (court != address(0)) revert CourtAlreadyBound();
        if (court_ == address(0)) revert ZeroAddress();
        court = court_;
        emit CourtBound(court_);
    }

    modifier onlyCourt() {
        if (msg.sender != court) revert NotCourt(msg.sender);
        _;
    }

    // ------------------------------------------------------------------ job lifecycle

    /// @notice Create a job escrowing `msg.value` wei as its reward and locking the aggregator's
    ///         bond (`p.aggregatorBond`, or the reward if 0) from its free stake.
    /// @param p Job parameters (see JobParams / SPEC.md).
    /// @return jobId The new job's id.
    function createJob(JobParams calldata p) external payable returns (uint256 jobId) {
        _checkAmount(msg.value);
        _checkParams(p);
        uint96 bond = p.aggregatorBond == 0 ? uint96(msg.value) : p.aggregatorBond;
        Account storage agg = _accounts[p.aggregator];
        uint256 free = uint256(agg.balance) - agg.locked;
        if (free < bond) revert AggregatorBondTooLow(free, bond);
        agg.locked += bond;

        jobId = nextJobId++;
        Job storage j = _jobs[jobId];
        j.owner = msg.sender;
        j.rounds = p.rounds;
        j.status = STATUS_CREATED;
        j.slashBps = p.slashBps;
        j.aggregator = p.aggregator;
        j.stakeRequired = p.stakeRequired;
        j.reward = uint96(msg.value); // <= uint96 max, checked above
        j.aggregatorBond = bond;
        j.minTrainers = uint16(p.minTrainers); // <= MAX_TRAINERS, checked above
        j.maxTrainers = uint16(p.maxTrainers);
        j.challengeWindow = p.challengeWindow;
        j.commitDuration = p.commitDuration;
        j.revealDuration = p.revealDuration;
        j.postDuration = p.postDuration;
        j.joinDeadline = uint64(block.timestamp) + p.joinDuration;
        j.minReliabilityPpm = p.minReliabilityPpm;
        j.minReliabilityWeight = p.minReliabilityWeight;
        j.modelHash = p.initialModelHash;
        j.validationRoot = p.validationRoot;
        emit JobCreated(jobId, msg.sender, p.aggregator, msg.value, bond, p);
    }

    /// @notice Join job `jobId`, locking its `stakeRequired` from the caller's free stake.
    ///         A gated job asks the reliability registry first (`ReliabilityTooLow`,
    ///         `ReliabilityWeightTooLow`). The job starts automatically when it reaches
    ///         `maxTrainers`.
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
        uint32 minPpm = j.minReliabilityPpm;
        uint128 minWeight = j.minReliabilityWeight;
        if (minPpm != 0 || minWeight != 0) {
            reliability.checkEligible(msg.sender, minPpm, minWeight); // a view: staticcall
        }

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
    function start(uint256 jobId) external virtual {
        Job storage j = _jobs[jobId];
        if (msg.sender != j.owner) revert NotOwner(jobId, msg.sender);
        if (j.status != STATUS_CREATED) revert WrongStatus(jobId, j.status);
        uint64 startDeadline = j.joinDeadline + CANCEL_GRACE;
        if (block.timestamp > startDeadline) revert StartTooLate(jobId, startDeadline);
        uint32 n = uint32(_trainers[jobId].length);
        if (n < j.minTrainers) revert NotEnoughTrainers(n, j.minTrainers);
        _start(jobId, j, n);
    }

    /// @notice Cancel a job that has not started: the owner, or the aggregator (declining to
    ///         serve; its bond was locked without its signature), at any time; anyone else after
    ///         the join deadline if too few trainers joined to start it, else only after a
    ///         further `CANCEL_GRACE` (the owner's time to `start`). The owner can then reclaim
    ///         the full reward; trainers unlock via `claim`; the bond is released.
    /// @param jobId Job to cancel.
    function cancel(uint256 jobId) external virtual {
        Job storage j = _jobs[jobId];
        if (j.status != STATUS_CREATED) revert WrongStatus(jobId, j.status);
        if (msg.sender != j.owner && msg.sender != j.aggregator) {
            bool startable = _trainers[jobId].length >= j.minTrainers;
            uint64 openUntil = j.joinDeadline + (startable ? CANCEL_GRACE : 0);
            if (block.timestamp <= openUntil) revert NotOwner(jobId, msg.sender);
        }
        j.status = STATUS_CANCELLED;
        j.ownerRefund = j.reward;
        // Nothing was judged, so nothing can be slashed: no withdraw cooldown (else anyone could
        // keep an aggregator from withdrawing by naming it in jobs it must cancel).
        _unlockStake(j.aggregator, j.aggregatorBond);
        j.aggregatorBond = 0;
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
            uint64 postDeadline = _deadlineAfter(j, revealEnd);
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
            uint64 postDeadline = _deadlineAfter(j, nowTs);
            j.revealEnd = nowTs;
            j.postDeadline = postDeadline;
            emit RoundScheduled(jobId, round, j.commitEnd, nowTs, postDeadline);
        }
    }

    /// @notice Post round `round`'s results (aggregator only), one entry per participant in
    ///         join order, and the new global model. Possible once the previous round is final.
    ///         Slashes flagged trainers (provisionally: a dispute can reverse it), records the
    ///         result's digest, then opens the next round or finishes the job.
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
        j.pendingRound = round;
        j.postedAt = uint64(block.timestamp);
        j.finalAt = 0;
        j.pendingDigest = _postedDigest(jobId, round, modelHash_, scores, reasons);
        emit RoundPosted(jobId, round, modelHash_, modelCid, scores, reasons);
        _advanceRound(jobId, j, modelHash_);
    }

    /// @notice Reveal the validation chunk of the pending round (anyone holding it: the owner,
    ///         or the aggregator it was given to), within `postDuration` of the post. Starts the
    ///         round's challenge window: the committee can now re-run the round.
    ///         Leaf: `keccak256(bytes.concat(keccak256(abi.encode(round, contentHash, cid, salt))))`
    ///         under the job's `validationRoot` (OpenZeppelin sorted-pair Merkle tree).
    /// @param jobId Job.
    /// @param round The pending round.
    /// @param contentHash sha256 of the chunk file.
    /// @param cid Storage address of the chunk file.
    /// @param salt The chunk's secret salt (hides the chunk until now).
    /// @param proof Merkle proof of the leaf.
    function revealValidationChunk(
        uint256 jobId,
        uint32 round,
        bytes32 contentHash,
        string calldata cid,
        bytes32 salt,
        bytes32[] calldata proof
    ) external {
        Job storage j = _jobs[jobId];
        if (round == 0 || round != j.pendingRound || j.finalAt != 0) revert NoChunkDue(jobId, round);
        uint256 due = uint256(j.postedAt) + j.postDuration;
        if (block.timestamp > due) revert ChunkRevealClosed(jobId, round);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(round, contentHash, cid, salt))));
        if (!MerkleProof.verifyCalldata(proof, j.validationRoot, leaf)) {
            revert ValidationMismatch(jobId);
        }
        uint64 finalAt = uint64(block.timestamp) + j.challengeWindow;
        j.finalAt = finalAt;
        emit ValidationChunkRevealed(jobId, round, contentHash, cid, salt, finalAt);
        _extendPostDeadline(jobId, j, finalAt);
    }

    /// @notice End a job whose aggregator missed the post deadline (anyone; the pending round, if
    ///         any, is final and no dispute is open): trainers are paid for the posted rounds, and
    ///         the aggregator's bond plus the unposted round's share go in equal parts to the
    ///         trainers who revealed in that round. The posted rounds' contributions update
    ///         reliability. (A job whose pending round's chunk was withheld ends by `forfeit`.)
    /// @param jobId Job.
    function abandon(uint256 jobId) external virtual {
        Job storage j = _jobs[jobId];
        uint8 status = j.status;
        if (status != STATUS_RUNNING) revert WrongStatus(jobId, status);
        if (j.disputeOpen) revert DisputeOpen(jobId);
        uint64 deadline = j.postDeadline;
        if (block.timestamp <= deadline) revert DeadlineNotPassed(jobId, deadline);
        // After the deadline an unrevealed chunk is overdue: that is the owner's fault.
        if (j.pendingRound != 0 && j.finalAt == 0) revert RoundNotFinal(jobId, j.pendingRound, 0);
        uint96 bond = j.aggregatorBond;
        j.aggregatorBond = 0;
        if (bond != 0) {
            _slashStake(j.aggregator, bond);
            emit AggregatorBondSlashed(jobId, j.aggregator, bond);
        }
        _endForAggregatorFault(jobId, j, bond);
    }

    /// @notice End a job whose owner withheld the pending round's validation chunk (anyone, once
    ///         `postDuration` passed since the post with no chunk revealed): the owner forfeits.
    ///         The pending round could never be challenged, so it is undone (its scores and
    ///         slashes; `posted` is its result as in `RoundPosted`), and the whole reward goes to
    ///         the trainers by their final rounds' scores (in equal parts if none scored); the
    ///         aggregator's bond is released.
    /// @param jobId Job.
    /// @param posted The pending round's posted result.
    function forfeit(uint256 jobId, RoundResult calldata posted) external virtual {
        Job storage j = _jobs[jobId];
        uint8 status = j.status;
        if (status != STATUS_RUNNING && status != STATUS_FINISHED) revert WrongStatus(jobId, status);
        uint32 round = j.pendingRound;
        if (round == 0 || j.finalAt != 0) revert NoChunkDue(jobId, round);
        uint64 due = j.postedAt + j.postDuration;
        if (block.timestamp <= due) revert DeadlineNotPassed(jobId, due);
        _undoPosted(jobId, round, j, posted);
        _endForOwnerFault(jobId, j, round - 1);
    }

    /// @notice Settle a finished job (anyone) once its last round is final and no dispute is
    ///         open: fix the reward pool and owner refund, fold each participant's contribution
    ///         into its reliability, release the aggregator's bond.
    /// @param jobId Job.
    function finalize(uint256 jobId) external {
        Job storage j = _jobs[jobId];
        if (j.status != STATUS_FINISHED) revert WrongStatus(jobId, j.status);
        _checkFinal(jobId, j);
        _finishSettled(jobId, j);
    }

    // ------------------------------------------------------------------ court hooks

    /// @notice Court only: open a dispute on the pending round `round`, challenged by
    ///         `challenger` (a participant of the job or a verifier, neither owner nor
    ///         aggregator), within the round's challenge window.
    /// @param jobId Job.
    /// @param round The pending round.
    /// @param challenger Who challenges.
    /// @return postedDigest Digest of the posted result.
    function openDispute(uint256 jobId, uint32 round, address challenger)
        external
        onlyCourt
        returns (bytes32 postedDigest)
    {
        Job storage j = _jobs[jobId];
        uint8 status = j.status;
        if (status != STATUS_RUNNING && status != STATUS_FINISHED) revert WrongStatus(jobId, status);
        uint64 finalAt = j.finalAt;
        // Open while now < finalAt: a round upheld (finalAt = now) is not challenged again in
        // the same block, and a zero window means no challenges.
        if (round == 0 || round != j.pendingRound || finalAt == 0 || block.timestamp >= finalAt) {
            revert ChallengeWindowClosed(jobId, round);
        }
        if (j.disputeOpen) revert DisputeOpen(jobId);
        if (challenger == j.owner || challenger == j.aggregator) {
            revert ConflictOfInterest(jobId, challenger);
        }
        bool eligible = _participants[jobId][challenger].joined
            || _accounts[challenger].roles & ROLE_VERIFIER != 0;
        if (!eligible) revert NotChallenger(jobId, challenger);
        j.disputeOpen = true;
        emit RoundDisputed(jobId, round, challenger);
        return j.pendingDigest;
    }

    /// @notice Court only: the committee upheld the disputed round; it is final now.
    /// @param jobId Job.
    function upholdRound(uint256 jobId) external onlyCourt {
        Job storage j = _jobs[jobId];
        if (!j.disputeOpen) revert WrongStatus(jobId, j.status);
        j.disputeOpen = false;
        uint64 nowTs = uint64(block.timestamp);
        j.finalAt = nowTs;
        emit RoundUpheld(jobId, j.pendingRound);
        _extendPostDeadline(jobId, j, nowTs);
    }

    /// @notice Court only: the committee overturned the disputed round and `fix` hashes to the
    ///         winning digest. Reverses the posted result (checked against the stored digest),
    ///         applies `fix`, takes the aggregator's bond from the job (it stays locked in the
    ///         aggregator's stake for the court to pay out with `transferBond`), and ends the
    ///         job: a proven liar does not keep judging it.
    /// @param jobId Job.
    /// @param winning Digest the committee's majority voted.
    /// @param fix The correct result.
    /// @param modelCid Storage address of the correct model.
    /// @param posted The result the aggregator posted (as in its RoundPosted event).
    /// @return harmed Trainers `fix` treats better than `posted` (a higher score, or a slash
    ///         lifted).
    /// @return aggregator The job's aggregator.
    /// @return bond Its bond, now owed to the dispute's winners.
    function correctRound(
        uint256 jobId,
        bytes32 winning,
        RoundResult calldata fix,
        string calldata modelCid,
        RoundResult calldata posted
    )
        external
        virtual
        onlyCourt
        returns (address[] memory harmed, address aggregator, uint96 bond)
    {
        Job storage j = _jobs[jobId];
        uint32 round = j.pendingRound;
        if (!j.disputeOpen) revert WrongStatus(jobId, j.status);
        _checkDigest(winning, digestOf(jobId, round, fix));
        _checkDigest(j.pendingDigest, digestOf(jobId, round, posted));
        harmed = _replaceResult(jobId, round, j, fix, posted);
        j.pendingDigest = winning;
        j.modelHash = fix.modelHash;
        j.disputeOpen = false;
        j.finalAt = uint64(block.timestamp);
        emit RoundCorrected(jobId, round, fix.modelHash, modelCid, fix.scores, fix.reasons);
        aggregator = j.aggregator;
        bond = j.aggregatorBond;
        j.aggregatorBond = 0;
        emit AggregatorBondSlashed(jobId, aggregator, bond);
        // Status is an enum-like code, not a balance: a strict comparison is what is meant.
        // slither-disable-next-line incorrect-equality
        if (j.status == STATUS_FINISHED) _finishSettled(jobId, j);
        else _endForAggregatorFault(jobId, j, 0);
    }

    /// @notice Court only: lock `amount` of `account`'s free stake as a dispute bond.
    /// @param account Challenger or committee member.
    /// @param amount Wei.
    function lockBond(address account, uint96 amount) external onlyCourt {
        _lockStake(account, amount);
    }

    /// @notice Court only: release `amount` of `account`'s dispute bond (cooldown applies).
    /// @param account Challenger or committee member.
    /// @param amount Wei.
    function releaseBond(address account, uint96 amount) external onlyCourt {
        _releaseBond(account, amount);
    }

    /// @notice Court only: pay `amount` of `from`'s locked dispute bond to `to`.
    /// @param from Whose bond is slashed.
    /// @param to Who is paid (credited as free stake).
    /// @param amount Wei.
    /// @param why Reason code recorded in `StakeTransferred` (court-defined).
    function transferBond(address from, address to, uint96 amount, uint8 why)
        external
        onlyCourt
    {
        _transferLocked(from, to, amount, why);
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

        uint256 reward = _rewardOf(jobId, j, p);
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
    function claimRefund(uint256 jobId) external virtual nonReentrant {
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

    // ------------------------------------------------------------------ views

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
        v.disputeOpen = j.disputeOpen;
        v.ownerForfeited = j.ownerForfeited;
        v.aggregator = j.aggregator;
        v.stakeRequired = j.stakeRequired;
        v.reward = j.reward;
        v.aggregatorBond = j.aggregatorBond;
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
        v.challengeWindow = j.challengeWindow;
        v.joinDeadline = j.joinDeadline;
        v.minReliabilityPpm = j.minReliabilityPpm;
        v.minReliabilityWeight = j.minReliabilityWeight;
        v.totalScore = j.totalScore;
        v.maxTotalScore = j.maxTotalScore;
        v.rewardPool = j.rewardPool;
        v.ownerRefund = j.ownerRefund;
        v.forfeitPool = j.forfeitPool;
        v.pendingRound = j.pendingRound;
        v.postedAt = j.postedAt;
        v.finalAt = j.finalAt;
        v.modelHash = j.modelHash;
        v.validationRoot = j.validationRoot;
        v.pendingDigest = j.pendingDigest;
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
        return _rewardOf(jobId, _jobs[jobId], p);
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
        if (block.timestamp <= j.postDeadline || j.disputeOpen) return 3;
        return 4;
    }

    // ------------------------------------------------------------------ internals

    function _checkParams(JobParams calldata p) internal view {
        if (p.aggregator == address(0)) revert ZeroAddress();
        // An owner scoring its own job could flag honest trainers and keep their stakes.
        if (p.aggregator == msg.sender) revert OwnerIsAggregator(msg.sender);
        if (_accounts[p.aggregator].roles & ROLE_AGGREGATOR == 0) {
            revert NotAnAggregator(p.aggregator);
        }
        if (p.rounds == 0 || p.rounds > MAX_ROUNDS) revert InvalidRounds(p.rounds);
        if (p.minTrainers == 0 || p.minTrainers > p.maxTrainers || p.maxTrainers > MAX_TRAINERS)
        {
            revert InvalidTrainerBounds(p.minTrainers, p.maxTrainers);
        }
        if (
            p.joinDuration == 0 || p.commitDuration == 0 || p.revealDuration == 0
                || p.postDuration == 0
        ) revert InvalidDuration();
        if (p.challengeWindow < minChallengeWindow) {
            revert ChallengeWindowTooShort(p.challengeWindow, minChallengeWindow);
        }
        uint256 span = uint256(p.joinDuration)
            + uint256(p.rounds)
                * (uint256(p.commitDuration) + p.revealDuration + p.postDuration + p.challengeWindow);
        if (span > MAX_JOB_DURATION) revert JobTooLong(span, MAX_JOB_DURATION);
        if (p.slashBps > BPS) revert InvalidSlashBps(p.slashBps);
        if (p.minReliabilityPpm > PPM) revert InvalidReliability(p.minReliabilityPpm);
        if (p.validationRoot == bytes32(0)) revert MissingValidationRoot();
    }

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

    /// @dev The aggregator always keeps `postDuration` after the previous round becomes final.
    function _extendPostDeadline(uint256 jobId, Job storage j, uint64 finalAt) internal {
        if (j.status != STATUS_RUNNING) return;
        uint64 deadline = finalAt + j.postDuration;
        if (deadline <= j.postDeadline) return;
        j.postDeadline = deadline;
        emit RoundScheduled(jobId, j.currentRound, j.commitEnd, j.revealEnd, deadline);
    }

    /// @dev Shared checks of every post entry point: aggregator, status, round, timing, and
    ///      that the previous round is final. Phase checks compare block.timestamp with
    ///      deadlines minutes apart; the few seconds a block producer can skew a timestamp do
    ///      not matter here (slither: timestamp, ok).
    function _checkPostable(uint256 jobId, uint32 round) internal view returns (Job storage j) {
        j = _jobs[jobId];
        if (msg.sender != j.aggregator) revert NotAggregator(jobId, msg.sender);
        if (j.status != STATUS_RUNNING) revert WrongStatus(jobId, j.status);
        uint32 current = j.currentRound;
        if (round != current) revert WrongRound(current, round);
        if (block.timestamp < j.revealEnd) revert RevealPhaseOpen(jobId, round);
        if (block.timestamp > j.postDeadline) revert PostDeadlinePassed(jobId, round);
        if (j.pendingRound != 0) _checkFinal(jobId, j);
    }

    /// @dev The pending round is final: its chunk is out, its window over, no dispute open.
    function _checkFinal(uint256 jobId, Job storage j) internal view {
        if (j.disputeOpen) revert DisputeOpen(jobId);
        uint64 finalAt = j.finalAt;
        if (finalAt == 0 || block.timestamp <= finalAt) {
            revert RoundNotFinal(jobId, j.pendingRound, finalAt);
        }
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
        uint64 best = 0; // the round's best score, computed at its first reason 2 (rare)
        for (uint256 i; i < n; ++i) {
            address t = trainers[i];
            Participant storage p = _participants[jobId][t];
            uint64 score = scores[i];
            uint8 reason = reasons[i];
            if (reason == REASON_UNAVAILABLE && best == 0) best = _bestOf(scores);
            uint64 total =
                _applyResult(jobId, round, t, p, score, reason, p.lastRevealRound == round, best);
            jobTotal += score;
            if (total > maxTotal) maxTotal = total;
        }
        j.totalScore = jobTotal;
        j.maxTotalScore = maxTotal;
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
        if (reason > MAX_REASON) revert UnknownReason(reason);
        if (score > MAX_ROUND_SCORE) revert ScoreTooLarge(score);
        if (
            (revealed ? reason == REASON_MISSING : reason != REASON_MISSING)
                || (reason != REASON_ACCEPTED && score != 0)
        ) revert InvalidResult(trainer, score, reason);
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

    /// @dev Undo `posted` for every participant and apply `fix`; returns the trainers `fix`
    ///      treats better (higher score, or a slash lifted). Who revealed is read off `posted`
    ///      (validated at post time), since later rounds overwrite `lastRevealRound`.
    function _replaceResult(
        uint256 jobId,
        uint32 round,
        Job storage j,
        RoundResult calldata fix,
        RoundResult calldata posted
    ) internal returns (address[] memory harmed) {
        address[] storage trainers = _trainers[jobId];
        uint256 n = trainers.length;
        if (fix.scores.length != n || fix.reasons.length != n) {
            revert LengthMismatch(n, fix.scores.length, fix.reasons.length);
        }
        harmed = new address[](n);
        uint256 count;
        uint64 postedBest = _bestOf(posted.scores);
        uint64 fixBest = _bestOf(fix.scores);
        uint64 jobTotal = j.totalScore;
        uint64 maxTotal;
        for (uint256 i; i < n; ++i) {
            address t = trainers[i];
            uint64 oldScore = posted.scores[i];
            bool oldSlashed = posted.reasons[i] >= FIRST_SLASHABLE_REASON;
            _undoResult(jobId, round, j, t, oldScore, posted.reasons[i], postedBest);
            uint8 reason = fix.reasons[i];
            uint64 score = fix.scores[i];
            bool revealed = posted.reasons[i] != REASON_MISSING;
            uint64 total = _applyResult(
                jobId, round, t, _participants[jobId][t], score, reason, revealed, fixBest
            );
            jobTotal = jobTotal - oldScore + score;
            if (total > maxTotal) maxTotal = total;
            if (score > oldScore || (oldSlashed && reason < FIRST_SLASHABLE_REASON)) {
                harmed[count++] = t;
            }
        }
        j.totalScore = jobTotal;
        j.maxTotalScore = maxTotal;
        assembly ("memory-safe") {
            mstore(harmed, count)
        }
    }

    /// @dev Undo `posted` (checked against the pending digest) for every participant.
    function _undoPosted(uint256 jobId, uint32 round, Job storage j, RoundResult calldata posted)
        internal
    {
        _checkDigest(j.pendingDigest, digestOf(jobId, round, posted));
        uint64 best = _bestOf(posted.scores);
        address[] storage trainers = _trainers[jobId];
        uint256 n = trainers.length;
        uint64 jobTotal = j.totalScore;
        uint64 maxTotal = 0;
        for (uint256 i; i < n; ++i) {
            address t = trainers[i];
            uint64 score = posted.scores[i];
            _undoResult(jobId, round, j, t, score, posted.reasons[i], best);
            jobTotal -= score;
            uint64 total = _participants[jobId][t].totalScore;
            if (total > maxTotal) maxTotal = total;
        }
        j.totalScore = jobTotal;
        j.maxTotalScore = maxTotal;
    }

    /// @dev Take back one trainer's posted score, missed or unavailable round (`best`: the
    ///      posted round's best score, as `_applyResult` added it), and, if it was slashed,
    ///      give the stake back (the slash amount is recomputed: locked stake after k flags is
    ///      a pure function of the job's stake and slashBps — missed rounds are only charged
    ///      at settlement — and no later round can have been posted meanwhile).
    function _undoResult(
        uint256 jobId,
        uint32 round,
        Job storage j,
        address trainer,
        uint64 score,
        uint8 reason,
        uint64 best
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
        uint96 before = j.stakeRequired;
        for (uint256 k; k < flags; ++k) {
            before -= uint96(uint256(before) * j.slashBps / BPS);
        }
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

    function _releaseJobBond(Job storage j) internal {
        uint96 bond = j.aggregatorBond;
        if (bond == 0) return;
        j.aggregatorBond = 0;
        _releaseBond(j.aggregator, bond);
    }

    /// @dev Settled: every round posted and final.
    // Its one external call, `reliability.recordJob` (in `_settle`), goes to the registry this
    // market deployed (immutable), which calls nothing: the event after it cannot be reordered.
    // slither-disable-next-line reentrancy-events
    function _finishSettled(uint256 jobId, Job storage j) internal {
        j.status = STATUS_SETTLED;
        _releaseJobBond(j);
        (uint256 pool, uint256 refund) = _settle(jobId, j, j.reward, 0);
        emit JobFinalized(jobId, pool, j.totalScore, refund);
    }

    /// @dev The aggregator failed the job (missed a post, or was overturned): trainers are
    ///      paid for the posted rounds; `forfeit` (its bond, if still held) plus the unposted
    ///      round's share go in equal parts to that round's revealers.
    // Its one external call, `reliability.recordJob` (in `_settle`), goes to the registry this
    // market deployed (immutable), which calls nothing: the event after it cannot be reordered.
    // slither-disable-next-line reentrancy-events
    function _endForAggregatorFault(uint256 jobId, Job storage j, uint96 forfeit) internal {
        uint32 posted = j.currentRound - 1;
        uint256 reward = j.reward;
        uint256 earned = reward * posted / j.rounds;
        uint256 share = reward * (posted + 1) / j.rounds - earned;
        uint256 reserved = 0;
        if (j.reveals != 0) {
            reserved = share;
            j.forfeitPool = uint128(forfeit + share);
        } else if (forfeit != 0) {
            emit SlashedStakeBurned(jobId, forfeit); // nobody revealed: nobody was harmed
        }
        j.status = STATUS_ABANDONED;
        _releaseJobBond(j);
        (uint256 pool, uint256 refund) = _settle(jobId, j, earned, reserved);
        emit JobAbandoned(jobId, posted, pool, refund, false);
    }

    /// @dev The owner withheld a validation chunk: the whole reward goes to the trainers, by the
    ///      scores of the `counted` (final) rounds.
    // Its one external call, `reliability.recordJob` (in `_settle`), goes to the registry this
    // market deployed (immutable), which calls nothing: the event after it cannot be reordered.
    // slither-disable-next-line reentrancy-events
    function _endForOwnerFault(uint256 jobId, Job storage j, uint32 counted) internal {
        j.pendingRound = counted; // reliability skips a job whose only round was void
        j.status = STATUS_ABANDONED;
        j.ownerForfeited = true;
        _releaseJobBond(j);
        (uint256 pool, uint256 refund) = _settle(jobId, j, j.reward, 0);
        emit JobAbandoned(jobId, counted, pool, refund, true);
    }

    /// @dev Fix the reward pool (`earned` reward + every slashed wei) and the owner's refund
    ///      (what is neither earned nor `reserved` for the forfeit pool, plus rounding dust,
    ///      capped at the reward), and report each participant's contribution to the
    ///      reliability registry. Slashed stake never flows back to the owner; with no
    ///      contribution at all (total score 0) it stays locked in the contract for good
    ///      (`SlashedStakeBurned`), unless the owner forfeited, when the pool goes to the
    ///      participants in equal parts.
    function _settle(uint256 jobId, Job storage j, uint256 earned, uint256 reserved)
        internal
        returns (uint256 pool, uint256 refund)
    {
        uint256 reward = j.reward;
        _chargeMissedRounds(jobId, j);
        pool = earned + j.slashedPool;
        uint64 total = j.totalScore;
        address[] storage trainers = _trainers[jobId];
        uint256 n = trainers.length;
        uint256 paid = 0;
        if (total != 0) {
            for (uint256 i; i < n; ++i) {
                paid += pool * _participants[jobId][trainers[i]].totalScore / total;
            }
        }
        bool equalSplit = total == 0 && j.ownerForfeited && n != 0;
        // Equal parts, floored: the dust stays with the refund/burn (intended order).
        // slither-disable-next-line divide-before-multiply
        if (equalSplit) paid = pool / n * n;
        uint256 unearned = reward - earned - reserved;
        uint256 refundable = (total == 0 && !equalSplit) ? reward - reserved : unearned + pool - paid;
        refund = refundable < reward ? refundable : reward;
        uint256 burned = pool + unearned - paid - refund;
        j.rewardPool = uint128(pool);
        j.ownerRefund = uint128(refund);
        if (burned != 0) emit SlashedStakeBurned(jobId, burned);
        _recordReliability(jobId, j);
    }

    /// @dev Report the job to the reliability registry, last (the registry is this market's
    ///      own contract and calls nothing). Only a job with at least one counted round
    ///      (`pendingRound`: the last posted round still standing) is recorded. Every job has
    ///      an aggregator that is not its owner (`OwnerIsAggregator`) and a non-zero bond
    ///      (`aggregatorBond`, or the reward, >= 1 wei); what distinct addresses cannot prove,
    ///      independence, is priced by the weight: each trainer's `stakeRequired`. Its score
    ///      is judged against the job's best total less the best scores of the rounds in which
    ///      its update was reported unavailable (reason 2); if every counted round was, the
    ///      job is skipped for it.
    function _recordReliability(uint256 jobId, Job storage j) internal {
        uint32 counted = j.pendingRound;
        if (counted == 0) return;
        uint64 maxTotal = j.maxTotalScore;
        address[] storage trainers = _trainers[jobId];
        uint256 n = trainers.length;
        ReliabilityRegistry.JobResult[] memory results = new ReliabilityRegistry.JobResult[](n);
        for (uint256 i; i < n; ++i) {
            address t = trainers[i];
            Participant storage p = _participants[jobId][t];
            uint64 left = p.unavailableMaxScore;
            results[i] = ReliabilityRegistry.JobResult({
                trainer: t,
                score: p.totalScore,
                maxScore: left < maxTotal ? maxTotal - left : 0,
                skip: p.unavailableRounds == counted
            });
        }
        reliability.recordJob(jobId, j.stakeRequired, results);
    }

    /// @dev Withholding has a price: each posted round a participant did not reveal in (reason 1,
    ///      which the contract itself checks against the reveals) costs half the job's cheat
    ///      slash of its stake, `stakeRequired × slashBps / 2 / BPS`, capped at what is still
    ///      locked, moved into the slashed pool. Charged once, at settlement, when no dispute
    ///      can change any round any more.
    function _chargeMissedRounds(uint256 jobId, Job storage j) internal {
        uint256 each = uint256(j.stakeRequired) * j.slashBps / (2 * BPS);
        if (each == 0) return;
        address[] storage trainers = _trainers[jobId];
        uint256 n = trainers.length;
        for (uint256 i; i < n; ++i) {
            address t = trainers[i];
            Participant storage p = _participants[jobId][t];
            // A per-round charge, floored per round, times the rounds missed (intended order).
            // slither-disable-next-line divide-before-multiply
            uint256 owed = each * p.missedRounds;
            uint96 locked = p.lockedStake;
            uint96 amount = owed < locked ? uint96(owed) : locked;
            if (amount == 0) continue;
            p.lockedStake = locked - amount;
            _slashStake(t, amount);
            j.slashedPool += amount;
            emit TrainerSlashed(jobId, 0, t, amount, REASON_MISSING);
        }
    }

    /// @dev Reward of participant `p` given the job's settlement (0 unless settled/abandoned):
    ///      its share of the pool by score, plus an equal part of the forfeit pool if it
    ///      revealed in the round the aggregator failed.
    function _rewardOf(uint256 jobId, Job storage j, Participant storage p)
        internal
        view
        returns (uint256 r)
    {
        uint8 status = j.status;
        if (status != STATUS_SETTLED && status != STATUS_ABANDONED) return 0;
        uint64 total = j.totalScore;
        if (total != 0) r = uint256(j.rewardPool) * p.totalScore / total;
        else if (j.ownerForfeited) r = uint256(j.rewardPool) / _trainers[jobId].length;
        uint256 forfeit = j.forfeitPool;
        if (forfeit != 0 && p.lastRevealRound == j.currentRound) r += forfeit / j.reveals;
    }

    /// @dev `digestOf(jobId, round, (modelHash_, scores, reasons))` for a post's calldata arrays,
    ///      hashed by copying them as they are: `_applyBatch` read (and so validated) every
    ///      element and both lengths equal the participant count, so the calldata words are
    ///      exactly their ABI encoding (cheaper than `abi.encode`, same value).
    function _postedDigest(
        uint256 jobId,
        uint32 round,
        bytes32 modelHash_,
        uint64[] calldata scores,
        uint8[] calldata reasons
    ) internal pure returns (bytes32 d) {
        assembly ("memory-safe") {
            let p := mload(0x40) // scratch past the free memory pointer, not allocated
            let size := shl(5, scores.length)
            mstore(p, jobId)
            mstore(add(p, 0x20), round)
            mstore(add(p, 0x40), modelHash_)
            mstore(add(p, 0x60), 0xa0)
            mstore(add(p, 0x80), add(0xc0, size))
            mstore(add(p, 0xa0), scores.length)
            calldatacopy(add(p, 0xc0), scores.offset, size)
            let q := add(add(p, 0xc0), size)
            mstore(q, reasons.length)
            calldatacopy(add(q, 0x20), reasons.offset, shl(5, reasons.length))
            d := keccak256(p, add(sub(q, p), add(0x20, shl(5, reasons.length))))
        }
    }

    function _checkDigest(bytes32 expected, bytes32 given) internal pure {
        if (expected != given) revert DigestMismatch(expected, given);
    }

    /// @dev Post deadline for a round whose reveals end at `revealEnd`: `postDuration` later,
    ///      but never less than `postDuration` after the previous round became final.
    function _deadlineAfter(Job storage j, uint64 revealEnd) internal view returns (uint64) {
        uint64 deadline = revealEnd + j.postDuration;
        uint64 finalAt = j.finalAt;
        if (j.pendingRound != 0 && finalAt != 0 && finalAt + j.postDuration > deadline) {
            deadline = finalAt + j.postDuration;
        }
        return deadline;
    }
}
