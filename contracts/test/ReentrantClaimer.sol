// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {FedMarket} from "../FedMarket.sol";

/// @title ReentrantClaimer
/// @notice TEST ONLY. A trainer contract that re-enters `FedMarket.claim` when it receives ETH.
/// @dev mode 0: accept ETH silently; 1: re-enter and let a failure bubble up (the outer claim
///      must then revert as a whole); 2: re-enter inside try/catch and record the outcome (the
///      outer claim then completes exactly once).
contract ReentrantClaimer {
    FedMarket public immutable market;
    uint8 public mode;
    uint256 public targetJob;
    uint256 public reentries;
    bool public reentrySucceeded;
    bytes public lastError;

    /// @param market_ Market to interact with.
    constructor(FedMarket market_) {
        market = market_;
    }

    /// @notice Set the re-entry mode (0 none, 1 bubble, 2 try/catch).
    function setMode(uint8 mode_) external {
        mode = mode_;
    }

    /// @notice Register with `msg.value` stake.
    function register() external payable {
        market.register{value: msg.value}();
    }

    /// @notice Join `jobId`.
    function join(uint256 jobId) external {
        market.join(jobId);
    }

    /// @notice Commit in `jobId`.
    function commit(uint256 jobId, bytes32 commitment) external {
        market.commit(jobId, commitment);
    }

    /// @notice Reveal in `jobId`.
    function reveal(uint256 jobId, bytes32 contentHash, string calldata cid, bytes32 salt) external {
        market.reveal(jobId, contentHash, cid, salt);
    }

    /// @notice Claim `jobId` (re-entering from `receive` per `mode`).
    function claim(uint256 jobId) external {
        targetJob = jobId;
        market.claim(jobId);
    }

    /// @notice Create a job owned by this contract (to test refunds to a rejecting owner).
    function createJob(FedMarket.JobParams calldata p) external payable returns (uint256) {
        return market.createJob{value: msg.value}(p);
    }

    /// @notice Cancel a job owned by this contract.
    function cancel(uint256 jobId) external {
        market.cancel(jobId);
    }

    /// @notice Claim the owner refund of `jobId` (re-entering `claim(targetJob)` per `mode`).
    function claimRefund(uint256 jobId) external {
        market.claimRefund(jobId);
    }

    /// @notice Withdraw free stake from the vault.
    function withdraw(uint256 amount) external {
        market.withdraw(amount);
    }

    receive() external payable {
        if (mode == 0 || msg.sender != address(market)) return;
        if (reentries > 0) return;
        reentries += 1;
        if (mode == 1) {
            market.claim(targetJob);
        } else {
            try market.claim(targetJob) {
                reentrySucceeded = true;
            } catch (bytes memory err) {
                lastError = err;
            }
        }
    }
}
