// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {FedMarketBase} from "./FedMarketBase.sol";
import {ReliabilityRegistry} from "./ReliabilityRegistry.sol";

/// @title FedMarketSettlement
/// @notice How a job that ended is settled, in passes over its trainers: undo a corrected or
///         forfeited round (and apply the correction), charge missed rounds, then record each
///         trainer's reliability and sum the rewards owed, and close (pool, refund, the ending
///         event). A job of up to 256 trainers settles inside the transaction that ends it; a
///         larger one in `settle` calls of at most MAX_SETTLE_STEPS steps (a step: one trainer
///         in one pass), so every transaction stays far below a block's gas limit.
/// @dev Runs only by delegatecall from the FedMarket that deployed it, on its storage (the
///      shared `FedMarketBase` layout); called directly, every entry point reverts.
contract FedMarketSettlement is FedMarketBase {
    address private immutable _self;

    error NotDelegated();

    /// @param reliability_ The market's reliability registry.
    constructor(ReliabilityRegistry reliability_) FedMarketBase(reliability_) {
        _self = address(this);
    }

    modifier onlyDelegated() {
        if (address(this) == _self) revert NotDelegated();
        _;
    }

    /// @notice Continue the settlement of a job of more than 256 trainers (anyone), which its
    ///         ending transaction (`finalize`, `abandon`, `forfeit` or a correction) left to
    ///         these calls, so that every transaction stays far below a block's gas limit: run
    ///         up to `steps` more steps (at most MAX_SETTLE_STEPS; a step is one trainer in one
    ///         pass: undo a corrected or forfeited round, charge missed rounds, record
    ///         reliability and sum rewards), then close the settlement (pool, refund, the
    ///         ending event). Claims open when it is complete (`settlementOf`).
    /// @param jobId Job.
    /// @param steps Most steps to run now.
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
    ) external onlyDelegated returns (bool done) {
        Job storage j = _jobs[jobId];
        uint256 cursor = j.settleCursor;
        uint8 status = j.status;
        if ((status != STATUS_SETTLED && status != STATUS_ABANDONED) || cursor == SETTLE_DONE) {
            revert NothingToSettle(jobId);
        }
        uint256 budget = steps < MAX_SETTLE_STEPS ? steps : MAX_SETTLE_STEPS;
        uint256 n = _trainers[jobId].length;
        uint256 base = 0;
        bytes32 key = j.undoKey;
        if (key != 0) {
            base = n;
            if (cursor < n) {
                _checkDigest(key, _undoKeyOf(jobId, round, posted, fix));
                uint256 end = cursor + budget < n ? cursor + budget : n;
                _undoSteps(jobId, j, round, cursor, end, posted, fix, fix.scores.length != 0);
                budget -= end - cursor;
                cursor = end;
            }
        }
        if (cursor >= base) cursor = _settleSteps(jobId, j, cursor, base, budget);
        j.settleCursor = uint16(cursor);
        uint32 total = uint32(base + 2 * n);
        emit SettlementProgress(jobId, cursor == SETTLE_DONE ? total : uint32(cursor), total);
        return cursor == SETTLE_DONE;
    }

    /// @notice Market only (delegatecall): start the settlement of job `jobId`, which just ended: a job of up to
    ///      INLINE_SETTLE_TRAINERS settles now; a larger one in `settle` calls.
    function startSettlement(uint256 jobId) external onlyDelegated {
        Job storage j = _jobs[jobId];
        uint256 n = _trainers[jobId].length;
        if (n <= INLINE_SETTLE_TRAINERS) j.settleCursor = _settleSteps(jobId, j, 0, 0, 2 * n);
    }

    /// @notice Market only (delegatecall): start a settlement that first undoes round `round`'s posted result (digest
    ///      `postedDigest`) and, if `withFix`, applies `fix` (digest `fixDigest`; 0 for a
    ///      forfeit). A large job keeps the two digests' key for `settle` to check.
    function startUndo(
        uint256 jobId,
        uint32 round,
        RoundResult calldata posted,
        RoundResult calldata fix,
        bool withFix,
        bytes32 postedDigest,
        bytes32 fixDigest
    ) external onlyDelegated {
        Job storage j = _jobs[jobId];
        uint256 n = _trainers[jobId].length;
        if (n > INLINE_SETTLE_TRAINERS) {
            j.undoKey = keccak256(abi.encode(postedDigest, fixDigest));
            return;
        }
        _undoSteps(jobId, j, round, 0, n, posted, fix, withFix);
        j.settleCursor = _settleSteps(jobId, j, n, n, 2 * n);
    }

    /// @dev Settlement pass "undo", trainers [from, to): take back `posted` (round `round`'s
    ///      result) and, if `withFix` (a correction; not for a forfeit), apply `fix`.
    ///      An entry the correction leaves as it was is skipped. The job's best total is
    ///      recomputed over the pass (a fix or an undo can lower it).
    function _undoSteps(
        uint256 jobId,
        Job storage j,
        uint32 round,
        uint256 from,
        uint256 to,
        RoundResult calldata posted,
        RoundResult calldata fix,
        bool withFix
    ) internal {
        uint64 postedBest = _bestOf(posted.scores);
        uint64 fixBest = withFix ? _bestOf(fix.scores) : 0;
        uint64 jobTotal = j.totalScore;
        uint64 maxTotal = from == 0 ? 0 : j.maxTotalScore;
        address[] storage trainers = _trainers[jobId];
        LockedTable memory table = _lockedTable(j);
        for (uint256 i = from; i < to; ++i) {
            address t = trainers[i];
            Participant storage p = _participants[jobId][t];
            uint64 oldScore = posted.scores[i];
            uint8 oldReason = posted.reasons[i];
            bool same = withFix && fix.scores[i] == oldScore && fix.reasons[i] == oldReason
                && (oldReason != REASON_UNAVAILABLE || postedBest == fixBest);
            if (!same) {
                _undoResult(jobId, round, j, t, oldScore, oldReason, postedBest, table);
                jobTotal -= oldScore;
                if (withFix) {
                    uint64 score = fix.scores[i];
                    bool revealed = oldReason != REASON_MISSING;
                    _applyResult(jobId, round, t, p, score, fix.reasons[i], revealed, fixBest);
                    jobTotal += score;
                }
            }
            uint64 total = p.totalScore;
            if (total > maxTotal) maxTotal = total;
        }
        j.totalScore = jobTotal;
        j.maxTotalScore = maxTotal;
    }

    /// @dev keccak256(abi.encode(posted digest, fix digest or 0)): what `settle` checks its
    ///      `posted` and `fix` against while an undo pass is still running.
    function _undoKeyOf(
        uint256 jobId,
        uint32 round,
        RoundResult calldata posted,
        RoundResult calldata fix
    ) internal pure returns (bytes32) {
        bytes32 fixDigest = fix.scores.length == 0 ? bytes32(0) : digestOf(jobId, round, fix);
        return keccak256(abi.encode(digestOf(jobId, round, posted), fixDigest));
    }

    /// @dev Run up to `budget` steps of the passes after the undo pass (which, if any, takes
    ///      steps [0, base)): "charge" [base, base + n) then "record" [base + n, base + 2n),
    ///      then close. Returns the new cursor (SETTLE_DONE once closed).
    function _settleSteps(uint256 jobId, Job storage j, uint256 cursor, uint256 base, uint256 budget)
        internal
        returns (uint16)
    {
        uint256 n = _trainers[jobId].length;
        uint256 end = cursor + budget < base + 2 * n ? cursor + budget : base + 2 * n;
        if (cursor < base + n) {
            uint256 to = end < base + n ? end : base + n;
            _chargeMissedRounds(jobId, j, cursor - base, to - base);
        }
        if (end <= base + n) return uint16(end);
        uint256 from = cursor > base + n ? cursor - base - n : 0;
        uint256 paid = from == 0 ? 0 : j.settledPaid;
        paid += _recordSteps(jobId, j, from, end - base - n);
        if (end < base + 2 * n) {
            j.settledPaid = uint128(paid);
            return uint16(end);
        }
        _closeSettlement(jobId, j, n, paid);
        return SETTLE_DONE;
    }

    /// @dev Settlement pass "record", trainers [from, to): report each contribution to the
    ///      reliability registry (the market's own contract, which calls nothing), and return
    ///      the sum of their rewards by score (the pool is fixed: every charge is made).
    ///      Only a job with at least one counted round (`pendingRound`: the last posted round
    ///      still standing) is recorded. Every job has an aggregator that is not its owner
    ///      (`OwnerIsAggregator`) and a non-zero bond (`aggregatorBond`, or the reward, >= 1
    ///      wei); what distinct addresses cannot prove, independence, is priced by the weight:
    ///      each trainer's `stakeRequired`. Its score is judged against the job's best total
    ///      less the best scores of the rounds in which its update was reported unavailable
    ///      (reason 2); if every counted round was, the job is skipped for it.
    function _recordSteps(uint256 jobId, Job storage j, uint256 from, uint256 to)
        internal
        returns (uint256 paid)
    {
        uint32 counted = j.pendingRound;
        uint64 maxTotal = j.maxTotalScore;
        uint64 jobTotal = j.totalScore;
        uint256 pool = _poolOf(j);
        address[] storage trainers = _trainers[jobId];
        ReliabilityRegistry.JobResult[] memory results =
            new ReliabilityRegistry.JobResult[](to - from);
        for (uint256 i = from; i < to; ++i) {
            address t = trainers[i];
            Participant storage p = _participants[jobId][t];
            uint64 score = p.totalScore;
            if (jobTotal != 0) paid += pool * score / jobTotal;
            uint64 left = p.unavailableMaxScore;
            results[i - from] = ReliabilityRegistry.JobResult({
                trainer: t,
                score: score,
                maxScore: left < maxTotal ? maxTotal - left : 0,
                skip: p.unavailableRounds == counted
            });
        }
        if (counted != 0) reliability.recordJob(jobId, j.stakeRequired, results);
    }

    /// @dev Close the settlement: fix the reward pool (earned reward + every slashed wei) and
    ///      the owner's refund (what is neither earned nor reserved for the forfeit pool, plus
    ///      the rounding dust of `paid`, capped at the reward), and emit the ending event.
    ///      Slashed stake never flows back to the owner; with no contribution at all (total
    ///      score 0) it stays locked in the contract for good (`SlashedStakeBurned`), unless the
    ///      owner forfeited, when the pool goes to the participants in equal parts.
    function _closeSettlement(uint256 jobId, Job storage j, uint256 n, uint256 paid) internal {
        uint256 reward = j.reward;
        (uint256 earned, uint256 reserved) = _earnedAndReserved(j);
        uint256 pool = earned + j.slashedPool;
        uint64 total = j.totalScore;
        bool equalSplit = total == 0 && j.ownerForfeited;
        // Equal parts, floored: the dust stays with the refund/burn (intended order).
        // slither-disable-next-line divide-before-multiply
        if (equalSplit) paid = pool / n * n;
        uint256 unearned = reward - earned - reserved;
        uint256 refundable = (total == 0 && !equalSplit) ? reward - reserved : unearned + pool - paid;
        uint256 refund = refundable < reward ? refundable : reward;
        uint256 burned = pool + unearned - paid - refund;
        j.rewardPool = uint128(pool);
        j.ownerRefund = uint128(refund);
        if (burned != 0) emit SlashedStakeBurned(jobId, burned);
        if (j.status == STATUS_SETTLED) emit JobFinalized(jobId, pool, total, refund);
        else if (j.ownerForfeited) emit JobAbandoned(jobId, j.pendingRound, pool, refund, true);
        else emit JobAbandoned(jobId, j.currentRound - 1, pool, refund, false);
    }

    /// @dev Settlement pass "charge", trainers [from, to). Withholding has a price: each posted
    ///      round a participant did not reveal in (reason 1, which the contract itself checks
    ///      against the reveals) costs half the job's cheat slash of its stake,
    ///      `stakeRequired × slashBps / 2 / BPS`, capped at what is still locked, moved into the
    ///      slashed pool. Charged once, at settlement, when no dispute can change any round.
    function _chargeMissedRounds(uint256 jobId, Job storage j, uint256 from, uint256 to) internal {
        uint256 each = uint256(j.stakeRequired) * j.slashBps / (2 * BPS);
        if (each == 0) return;
        address[] storage trainers = _trainers[jobId];
        uint128 slashed = j.slashedPool;
        for (uint256 i = from; i < to; ++i) {
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
            slashed += amount;
            emit TrainerSlashed(jobId, 0, t, amount, REASON_MISSING);
        }
        j.slashedPool = slashed;
    }
}
