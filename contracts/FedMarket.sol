// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {ReliabilityRegistry} from "./ReliabilityRegistry.sol";
import {FedMarketBase} from "./FedMarketBase.sol";
import {FedMarketSettlement} from "./FedMarketSettlement.sol";

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
///                              + Σ over jobs (reward + slashedPool + forfeited bond
///                                             − paid out), the forfeited bond as in (I2).
///  (I2) For a settled/abandoned/cancelled job: Σ paid + ownerRefund + burned
///       == reward + slashedPool + the forfeited bond (forfeitPool less the unposted round's
///       share, which is part of reward); the contract never pays out more than a job holds.
///  (I3) Every participant and the owner can be paid at most once per job (claimed flags are
///       set before any transfer; claim/claimRefund/withdraw are also nonReentrant).
///  (I4) A participant's lockedStake is part of its vault `locked` until it claims; a job's
///       aggregatorBond is part of the aggregator's `locked` until the job ends.
///  (I5) Job status only moves forward along the state machine in SPEC.md; every loop is
///       bounded by MAX_TRAINERS (1024) or, at settlement, by MAX_SETTLE_STEPS per
///       transaction. At most one posted round is pending at a time.
///  (I6) Nobody claims from a job before its settlement is complete (`settleCursor` is
///       SETTLE_DONE), and every settlement step runs exactly once.
contract FedMarket is FedMarketBase {
    /// @notice Shortest challenge window a job may set (seconds; fixed per deployment: short
    ///         on dev chains, hours in production).
    uint32 public immutable minChallengeWindow;
    /// @dev Who may bind the court, once.
    address private immutable _deployer;
    /// @notice The dispute court allowed to call the court-only hooks (bound once).
    address public court;
    /// @notice The settlement module (`FedMarketSettlement`), run on this contract's storage by
    ///         delegatecall: the code that settles a job, apart so the market fits a contract.
    address public immutable settlement;

    /// @param alphaPpm Weight of the newest job in reliability scores, ppm (<= 1e6); the
    ///        market deploys its `ReliabilityRegistry` with it.
    /// @param minChallengeWindow_ Shortest challenge window a job may set, seconds.
    constructor(uint32 alphaPpm, uint32 minChallengeWindow_)
        FedMarketBase(new ReliabilityRegistry(alphaPpm))
    {
        minChallengeWindow = minChallengeWindow_;
        _deployer = msg.sender;
        settlement = address(new FedMarketSettlement(reliability));
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
        p.seeded = true; // the trainer pays its second slot's first write, not a later post
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
        _startSettlement(jobId);
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
        bytes32 postedDigest = digestOf(jobId, round, posted);
        _checkDigest(j.pendingDigest, postedDigest);
        _endForOwnerFault(j, round - 1);
        _startUndo(jobId, round, posted, posted, false, postedDigest, 0);
    }

    /// @notice Settle a finished job (anyone) once its last round is final and no dispute is
    ///         open: fix the reward pool and owner refund, fold each participant's contribution
    ///         into its reliability, release the aggregator's bond. A job of more than 256
    ///         trainers settles in `settle` calls after this one.
    /// @param jobId Job.
    function finalize(uint256 jobId) external {
        Job storage j = _jobs[jobId];
        if (j.status != STATUS_FINISHED) revert WrongStatus(jobId, j.status);
        _checkFinal(jobId, j);
        _finishSettled(jobId, j);
        _startSettlement(jobId);
    }

    /// @notice Continue the settlement of a job of more than 256 trainers (anyone): see
    ///         `FedMarketSettlement.settle`, which this runs on the market's storage.
    /// @param jobId Job.
    /// @param steps Most steps to run now (at most MAX_SETTLE_STEPS).
    /// @param round While a correction or forfeit is still being applied: its round.
    /// @param posted ...then: that round's posted result (as in `RoundPosted`).
    /// @param fix ...then: the correction (as in `RoundCorrected`); empty for a forfeit.
    /// @return done Whether the settlement is complete.
    function settle(
        uint256 jobId,
        uint32 steps,
        uint32 round,
        RoundResult calldata posted,
        RoundResult calldata fix
    ) external returns (bool done) {
        (jobId, steps, round, posted, fix); // decoded by the module, from msg.data
        return abi.decode(_delegate(msg.data), (bool));
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
        bytes32 postedDigest = digestOf(jobId, round, posted);
        _checkDigest(j.pendingDigest, postedDigest);
        harmed = _checkFix(jobId, fix, posted);
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
        _startUndo(jobId, round, posted, fix, true, postedDigest, winning);
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
        _checkClaimable(jobId, j);
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
        _checkClaimable(jobId, j);
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

    /// @notice Settlement progress of job `jobId`: `done` of `total` steps (both 0 unless the
    ///         job ended settled or abandoned). `undo`: the settlement begins by applying a
    ///         correction or forfeit, so `settle` needs that round's results while done < n.
    /// @param jobId Job.
    /// @return done Steps done (equal to `total` once complete).
    /// @return total Steps in all: 2 per trainer, 3 with `undo`.
    /// @return undo Whether the settlement has an undo pass.
    function settlementOf(uint256 jobId)
        public
        view
        returns (uint32 done, uint32 total, bool undo)
    {
        Job storage j = _jobs[jobId];
        uint8 status = j.status;
        if (status != STATUS_SETTLED && status != STATUS_ABANDONED) return (0, 0, false);
        undo = j.undoKey != 0;
        total = uint32((undo ? 3 : 2) * _trainers[jobId].length);
        uint16 cursor = j.settleCursor;
        done = cursor == SETTLE_DONE ? total : cursor;
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
        bool bestKnown = false; // not `best == 0`: a round where every score is 0 is possible
        for (uint256 i; i < n; ++i) {
            address t = trainers[i];
            Participant storage p = _participants[jobId][t];
            uint64 score = scores[i];
            uint8 reason = reasons[i];
            if (reason == REASON_UNAVAILABLE && !bestKnown) {
                best = _bestOf(scores);
                bestKnown = true;
            }
            uint64 total =
                _applyResult(jobId, round, t, p, score, reason, p.lastRevealRound == round, best);
            jobTotal += score;
            if (total > maxTotal) maxTotal = total;
        }
        j.totalScore = jobTotal;
        j.maxTotalScore = maxTotal;
    }

    /// @dev Validate a correction against the posted result (both checked by digest) without
    ///      touching storage: one entry per participant, each a valid result for what the
    ///      trainer did (who revealed is read off `posted`, validated at post time, since later
    ///      rounds overwrite `lastRevealRound`). Returns the trainers `fix` treats better (a
    ///      higher score, or a slash lifted). `_undoSteps` applies it.
    function _checkFix(uint256 jobId, RoundResult calldata fix, RoundResult calldata posted)
        internal
        view
        returns (address[] memory harmed)
    {
        address[] storage trainers = _trainers[jobId];
        uint256 n = trainers.length;
        if (fix.scores.length != n || fix.reasons.length != n) {
            revert LengthMismatch(n, fix.scores.length, fix.reasons.length);
        }
        harmed = new address[](n);
        uint256 count;
        for (uint256 i; i < n; ++i) {
            uint64 score = fix.scores[i];
            uint8 reason = fix.reasons[i];
            uint8 oldReason = posted.reasons[i];
            if (!_validEntry(score, reason, oldReason != REASON_MISSING)) {
                revert InvalidResult(trainers[i], score, reason);
            }
            bool lifted = oldReason >= FIRST_SLASHABLE_REASON && reason < FIRST_SLASHABLE_REASON;
            if (score > posted.scores[i] || lifted) harmed[count++] = trainers[i];
        }
        assembly ("memory-safe") {
            mstore(harmed, count)
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

    /// @dev Settled: every round posted and final. The caller starts the settlement.
    function _finishSettled(uint256 jobId, Job storage j) internal {
        j.status = STATUS_SETTLED;
        _releaseJobBond(j);
    }

    /// @dev The aggregator failed the job (missed a post, or was overturned): trainers are
    ///      paid for the posted rounds; `forfeit` (its bond, if still held) plus the unposted
    ///      round's share go in equal parts to that round's revealers (`_earnedAndReserved`).
    ///      The caller starts the settlement.
    function _endForAggregatorFault(uint256 jobId, Job storage j, uint96 forfeit) internal {
        (, uint256 reserved) = _shares(j, j.currentRound - 1);
        if (j.reveals != 0) j.forfeitPool = uint128(forfeit + reserved);
        else if (forfeit != 0) emit SlashedStakeBurned(jobId, forfeit); // nobody was harmed
        j.status = STATUS_ABANDONED;
        _releaseJobBond(j);
    }

    /// @dev The owner withheld a validation chunk: the whole reward goes to the trainers, by the
    ///      scores of the `counted` (final) rounds. The caller starts the settlement.
    function _endForOwnerFault(Job storage j, uint32 counted) internal {
        j.pendingRound = counted; // reliability skips a job whose only round was void
        j.status = STATUS_ABANDONED;
        j.ownerForfeited = true;
        _releaseJobBond(j);
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
        if (j.settleCursor != SETTLE_DONE) return 0;
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

    /// @dev Claims open once a job is cancelled, or settled or abandoned and its settlement
    ///      is complete.
    /// @dev Start job `jobId`'s settlement (it just ended) in the settlement module.
    function _startSettlement(uint256 jobId) internal {
        _delegate(abi.encodeCall(FedMarketSettlement.startSettlement, (jobId)));
    }

    /// @dev Start a settlement that first undoes round `round`'s `posted` result (digest
    ///      `postedDigest`) and, if `withFix`, applies `fix` (digest `fixDigest`).
    function _startUndo(
        uint256 jobId,
        uint32 round,
        RoundResult calldata posted,
        RoundResult calldata fix,
        bool withFix,
        bytes32 postedDigest,
        bytes32 fixDigest
    ) internal {
        bytes memory data = abi.encodeCall(
            FedMarketSettlement.startUndo,
            (jobId, round, posted, fix, withFix, postedDigest, fixDigest)
        );
        _delegate(data);
    }

    /// @dev Run `data` in the settlement module on this contract's storage; its revert is this
    ///      call's revert. The module is this market's own immutable contract.
    // slither-disable-next-line low-level-calls
    function _delegate(bytes memory data) internal returns (bytes memory ret) {
        bool ok;
        (ok, ret) = settlement.delegatecall(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 0x20), mload(ret))
            }
        }
    }

    function _checkClaimable(uint256 jobId, Job storage j) internal view {
        uint8 status = j.status;
        if (status < STATUS_SETTLED) revert WrongStatus(jobId, status);
        if (status != STATUS_CANCELLED && j.settleCursor != SETTLE_DONE) {
            (uint32 done, uint32 total,) = settlementOf(jobId);
            revert SettlementPending(jobId, done, total);
        }
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
