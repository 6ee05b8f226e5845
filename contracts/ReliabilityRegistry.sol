// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title ReliabilityRegistry
/// @notice Cross-job reliability of each trainer, weighted by the stake it had at risk: a
///         decayed, stake-weighted mean of its per-job contributions (ppm), the decayed stake
///         that mean rests on (its confidence weight, wei) and the number of jobs folded in.
///         Written only by the market that deployed it (at settlement); read by that market
///         when a trainer joins a gated job, and by anyone.
/// @dev One storage slot per trainer [32+32+128 = 192 bits]. With α = `alphaPpm` / 1e6 and a
///      job's stake s (the stake each trainer locked for it) and contribution c (ppm):
///        first job:  ppm = c,  W = s;
///        later:      D = ⌊W·(1e6 − α)/1e6⌋,  W' = D + s,
///                    ppm' = ⌊(ppm·D + c·s) / W'⌋  (ppm' = c if W' = 0);
///        jobs' = jobs + 1.
///      Invariants: `ppm <= 1e6` (a weighted mean of values <= 1e6); `jobs` only increases, by
///      1 per recorded job. No overflow: s < 2^96 and W' <= W + s, so after k jobs W < k·2^96,
///      and k < 2^32 (`jobs` is a checked uint32), hence W < 2^128 (uint128); the products
///      ppm·D and c·s are below 2^20·2^128 in 256-bit arithmetic.
contract ReliabilityRegistry {
    uint32 internal constant PPM = 1_000_000;

    struct Reliability {
        uint32 ppm;
        uint32 jobs;
        uint128 weight;
    }

    /// @notice One trainer's result in a settled job, as the market reports it.
    /// @dev `maxScore` is the job's best total score over the rounds counted for this trainer
    ///      (the job's `maxTotalScore` minus the best scores of the rounds in which this
    ///      trainer's update was reported unavailable, reason 2; floored at 0). `skip`: every
    ///      counted round was reason 2 for this trainer, so the job says nothing about it.
    struct JobResult {
        address trainer;
        uint64 score;
        uint64 maxScore;
        bool skip;
    }

    /// @notice Weight of the newest job's stake against the decayed past, α in ppm (<= 1e6).
    uint32 public immutable alphaPpm;
    /// @notice The market that deployed this registry: the only writer.
    address public immutable market;

    mapping(address => Reliability) internal _reliability;

    /// @notice `trainer`'s reliability changed when job `jobId` settled: contribution
    ///         `contributionPpm` at stake `stake` gave `reliabilityPpm` over `weight` and `jobs`.
    event ReliabilityUpdated(
        address indexed trainer,
        uint256 indexed jobId,
        uint32 contributionPpm,
        uint96 stake,
        uint32 reliabilityPpm,
        uint128 weight,
        uint32 jobs
    );

    error InvalidReliability(uint32 ppm);
    error NotMarket(address caller);
    error ReliabilityTooLow(uint32 have, uint32 need);
    error ReliabilityWeightTooLow(uint128 have, uint128 need);

    /// @param alphaPpm_ Weight α of the newest job, ppm (<= 1e6).
    constructor(uint32 alphaPpm_) {
        if (alphaPpm_ > PPM) revert InvalidReliability(alphaPpm_);
        alphaPpm = alphaPpm_;
        market = msg.sender;
    }

    /// @notice Reliability of `trainer`.
    /// @param trainer Trainer.
    /// @return ppm Stake-weighted decayed mean of its contributions, 0..1e6 (0 with no job).
    /// @return jobs Number of jobs folded into `ppm`.
    /// @return weight Decayed stake `ppm` rests on, wei (its confidence weight).
    function reliabilityOf(address trainer)
        external
        view
        returns (uint32 ppm, uint32 jobs, uint128 weight)
    {
        Reliability storage r = _reliability[trainer];
        return (r.ppm, r.jobs, r.weight);
    }

    /// @notice Revert unless `trainer` has reliability >= `minPpm` and weight >= `minWeight`
    ///         (`ReliabilityTooLow`, `ReliabilityWeightTooLow`): the market's join gate.
    /// @param trainer Trainer.
    /// @param minPpm Smallest reliability, ppm.
    /// @param minWeight Smallest confidence weight, wei.
    function checkEligible(address trainer, uint32 minPpm, uint128 minWeight) external view {
        Reliability storage r = _reliability[trainer];
        if (r.ppm < minPpm) revert ReliabilityTooLow(r.ppm, minPpm);
        if (r.weight < minWeight) revert ReliabilityWeightTooLow(r.weight, minWeight);
    }

    /// @notice Market only: fold settled job `jobId`'s results into its trainers' records.
    ///         Each result's contribution is `c = min(1e6, score·1e6 / maxScore)` (0 if both
    ///         are 0, 1e6 if only `maxScore` is), weighted by `stake`.
    /// @param jobId The settled job.
    /// @param stake Stake each trainer locked for the job, wei (the weight it adds).
    /// @param results One entry per participant; entries with `skip` are not recorded.
    function recordJob(uint256 jobId, uint96 stake, JobResult[] calldata results) external {
        if (msg.sender != market) revert NotMarket(msg.sender);
        uint256 alpha = alphaPpm;
        uint256 n = results.length;
        for (uint256 i; i < n; ++i) {
            JobResult calldata res = results[i];
            if (res.skip) continue;
            uint32 c = _contribution(res.score, res.maxScore);
            Reliability memory r = _reliability[res.trainer];
            uint32 ppm = c;
            uint256 weight = stake;
            if (r.jobs != 0) {
                // D is the decayed weight, floored on purpose (the stored weight is exactly
                // D + s); the mean is then taken over D and s (intended order).
                // slither-disable-next-line divide-before-multiply
                uint256 decayed = uint256(r.weight) * (PPM - alpha) / PPM;
                weight += decayed;
                if (weight != 0) {
                    ppm = uint32((uint256(r.ppm) * decayed + uint256(c) * stake) / weight);
                }
            }
            uint32 jobs = r.jobs + 1;
            _reliability[res.trainer] = Reliability(ppm, jobs, uint128(weight));
            emit ReliabilityUpdated(res.trainer, jobId, c, stake, ppm, uint128(weight), jobs);
        }
    }

    function _contribution(uint64 score, uint64 maxScore) internal pure returns (uint32) {
        if (score >= maxScore) return score == 0 ? 0 : PPM;
        return uint32(uint256(score) * PPM / maxScore);
    }
}
