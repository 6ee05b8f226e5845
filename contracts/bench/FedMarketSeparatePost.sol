// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {FedMarket} from "../FedMarket.sol";

/// @title FedMarketSeparatePost
/// @notice GAS BENCHMARK ONLY. FedMarket plus a variant that posts a round's results one
///         trainer per transaction, through the same internal per-trainer logic
///         (`_applyResult`) as the batched `postRound`, so the two can be compared.
/// @dev Results must be posted in participant order (index 0, 1, ...), then the round closed.
contract FedMarketSeparatePost is FedMarket {
    /// @dev Next participant index to post, per job (reset when the round closes).
    mapping(uint256 => uint32) internal _nextIndex;

    /// @notice One trainer's result was posted on its own.
    event ResultPosted(
        uint256 indexed jobId, uint32 indexed round, address indexed trainer, uint64 score, uint8 reason
    );

    error WrongIndex(uint32 expected, uint32 given);
    error NotInBench();

    /// @param alphaPpm EMA weight of the newest job in reliability scores, ppm.
    /// @param minChallengeWindow_ Shortest challenge window a job may set, seconds.
    constructor(uint32 alphaPpm, uint32 minChallengeWindow_)
        FedMarket(alphaPpm, minChallengeWindow_)
    {}

    /// @notice Post one trainer's result for `round` (aggregator only, in join order).
    /// @param jobId Job.
    /// @param round Current round.
    /// @param index Participant index (must be the next unposted one).
    /// @param score Score.
    /// @param reason Reason code.
    function postResultSingle(uint256 jobId, uint32 round, uint32 index, uint64 score, uint8 reason)
        external
    {
        Job storage j = _checkPostable(jobId, round);
        uint32 expected = _nextIndex[jobId];
        if (index != expected || index >= _trainers[jobId].length) {
            revert WrongIndex(expected, index);
        }
        address trainer = _trainers[jobId][index];
        Participant storage p = _participants[jobId][trainer];
        // One result at a time: the round's best score is not known yet, so a reason 2 here
        // leaves nothing out of reliability (the benchmark measures gas, not reliability).
        uint64 total =
            _applyResult(jobId, round, trainer, p, score, reason, p.lastRevealRound == round, 0);
        j.totalScore += score;
        if (total > j.maxTotalScore) j.maxTotalScore = total;
        _nextIndex[jobId] = index + 1;
        emit ResultPosted(jobId, round, trainer, score, reason);
    }

    /// @notice Close `round` after every trainer's result was posted (aggregator only).
    /// @param jobId Job.
    /// @param round Current round.
    /// @param modelHash_ sha256 of the new global model.
    /// @param modelCid Storage address of the new global model.
    function closeRoundSingle(uint256 jobId, uint32 round, bytes32 modelHash_, string calldata modelCid)
        external
    {
        Job storage j = _checkPostable(jobId, round);
        uint32 n = uint32(_trainers[jobId].length);
        if (_nextIndex[jobId] != n) revert WrongIndex(n, _nextIndex[jobId]);
        _nextIndex[jobId] = 0;
        // Same pending-round bookkeeping as postRound (no digest: the results were not batched).
        j.pendingRound = round;
        j.postedAt = uint64(block.timestamp);
        j.finalAt = 0;
        emit RoundPosted(jobId, round, modelHash_, modelCid, new uint64[](0), new uint8[](0));
        _advanceRound(jobId, j, modelHash_);
    }

    /// @notice Not benchmarked (left out so this contract stays under the EIP-170 size limit).
    function forfeit(uint256, RoundResult calldata) external pure override {
        revert NotInBench();
    }

    /// @notice Not benchmarked (left out so this contract stays under the EIP-170 size limit).
    function abandon(uint256) external pure override {
        revert NotInBench();
    }

    /// @notice Not benchmarked (left out so this contract stays under the EIP-170 size limit).
    function cancel(uint256) external pure override {
        revert NotInBench();
    }

    /// @notice Not benchmarked (left out so this contract stays under the EIP-170 size limit).
    function start(uint256) external pure override {
        revert NotInBench();
    }

    /// @notice Not benchmarked (left out so this contract stays under the EIP-170 size limit).
    function claimRefund(uint256) external pure override {
        revert NotInBench();
    }
}
