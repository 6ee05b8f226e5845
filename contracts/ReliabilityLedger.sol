// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title ReliabilityLedger
/// @notice Cross-job reliability of each trainer: an exponential moving average (parts per
///         million) of its per-job contribution, plus the number of finished jobs it rests on.
/// @dev Invariants: `ppm <= 1e6` always (both EMA inputs are <= 1e6 and α <= 1e6);
///      `jobs` only ever increases, by exactly 1 per finalized job the trainer took part in.
///      Storage: one slot per trainer (uint32 + uint32).
abstract contract ReliabilityLedger {
    uint32 internal constant PPM = 1_000_000;

    struct Reliability {
        uint32 ppm;
        uint32 jobs;
    }

    /// @notice EMA weight α of the newest job, in ppm (immutable).
    uint32 public immutable reliabilityAlphaPpm;

    mapping(address => Reliability) internal _reliability;

    /// @notice A trainer's reliability changed after job `jobId` was finalized.
    event ReliabilityUpdated(
        address indexed trainer,
        uint256 indexed jobId,
        uint32 contributionPpm,
        uint32 reliabilityPpm,
        uint32 jobs
    );

    error InvalidReliability(uint32 ppm);

    constructor(uint32 alphaPpm) {
        if (alphaPpm > PPM) revert InvalidReliability(alphaPpm);
        reliabilityAlphaPpm = alphaPpm;
    }

    /// @notice Reliability of `trainer`.
    /// @return ppm EMA of past contributions, 0..1e6 (0 for a trainer with no finished job).
    /// @return jobs Number of finished jobs folded into `ppm`.
    function reliabilityOf(address trainer) external view returns (uint32 ppm, uint32 jobs) {
        Reliability storage r = _reliability[trainer];
        return (r.ppm, r.jobs);
    }

    /// @dev Fold one job's contribution (ppm, <= 1e6) into the trainer's EMA.
    ///      First job: rel = c; later: rel = (rel * (1e6 - α) + c * α) / 1e6.
    function _recordContribution(address trainer, uint256 jobId, uint32 contributionPpm)
        internal
    {
        Reliability memory r = _reliability[trainer];
        uint32 ppm;
        if (r.jobs == 0) {
            ppm = contributionPpm;
        } else {
            uint256 alpha = reliabilityAlphaPpm;
            ppm = uint32((uint256(r.ppm) * (PPM - alpha) + uint256(contributionPpm) * alpha) / PPM);
        }
        uint32 jobs = r.jobs + 1;
        _reliability[trainer] = Reliability(ppm, jobs);
        emit ReliabilityUpdated(trainer, jobId, contributionPpm, ppm, jobs);
    }
}
