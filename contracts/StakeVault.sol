// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title StakeVault
/// @notice Trainer registration and native-ETH stake accounting: free balance, locked stake,
///         withdraw. Jobs lock, unlock and slash stake through the internal hooks below.
/// @dev Invariants (hold after every external call):
///      (V1) for every account `a`: `a.locked <= a.balance`;
///      (V2) only `balance - locked` (free stake) can ever leave through `withdraw`;
///      (V3) `Σ a.balance` is exactly the part of `address(this).balance` owned by trainers
///           (the rest is job escrow + slashed stake not yet paid out, tracked by FedMarket).
///      Storage: one slot per account (uint120 + uint120 + bool = 248 bits). 2^120 wei is ~1.3e18
///      ETH, far above the total supply; every inflow is additionally capped at uint96.
abstract contract StakeVault is ReentrancyGuard {
    /// @dev One storage slot.
    struct Account {
        uint120 balance; // total stake held for the trainer (free + locked)
        uint120 locked; // part of `balance` locked by running / unsettled jobs
        bool registered;
    }

    mapping(address => Account) internal _accounts;

    /// @notice A trainer registered with an initial stake.
    event TrainerRegistered(address indexed trainer, uint256 stake);
    /// @notice A trainer added stake.
    event StakeDeposited(address indexed trainer, uint256 amount, uint256 balance);
    /// @notice A trainer withdrew free stake.
    event StakeWithdrawn(address indexed trainer, uint256 amount, uint256 balance);

    error AlreadyRegistered(address trainer);
    error NotRegistered(address trainer);
    error ZeroAmount();
    error AmountTooLarge(uint256 amount);
    error InsufficientFreeStake(uint256 available, uint256 requested);
    error TransferFailed(address to, uint256 amount);

    /// @notice Register `msg.sender` as a trainer with `msg.value` wei of stake.
    /// @dev Reverts `AlreadyRegistered` or `ZeroAmount`.
    function register() external payable {
        Account storage a = _accounts[msg.sender];
        if (a.registered) revert AlreadyRegistered(msg.sender);
        _checkAmount(msg.value);
        a.registered = true;
        a.balance = uint120(msg.value);
        emit TrainerRegistered(msg.sender, msg.value);
    }

    /// @notice Add `msg.value` wei to the caller's stake.
    /// @dev Reverts `NotRegistered` or `ZeroAmount`.
    function deposit() external payable {
        Account storage a = _accounts[msg.sender];
        if (!a.registered) revert NotRegistered(msg.sender);
        _checkAmount(msg.value);
        uint120 balance = a.balance + uint120(msg.value);
        a.balance = balance;
        emit StakeDeposited(msg.sender, msg.value, balance);
    }

    /// @notice Withdraw `amount` wei of free (unlocked) stake to the caller.
    /// @dev Checks-effects-interactions + nonReentrant. Reverts `NotRegistered`, `ZeroAmount`,
    ///      `InsufficientFreeStake(available, requested)` or `TransferFailed`.
    /// @param amount Wei to withdraw; at most `balance - locked`.
    function withdraw(uint256 amount) external nonReentrant {
        Account storage a = _accounts[msg.sender];
        if (!a.registered) revert NotRegistered(msg.sender);
        if (amount == 0) revert ZeroAmount();
        uint256 free = uint256(a.balance) - a.locked;
        if (amount > free) revert InsufficientFreeStake(free, amount);
        uint120 balance = a.balance - uint120(amount); // amount <= free <= balance: fits
        a.balance = balance;
        emit StakeWithdrawn(msg.sender, amount, balance);
        (bool ok,) = payable(msg.sender).call{value: amount}("");
        if (!ok) revert TransferFailed(msg.sender, amount);
    }

    /// @notice Stake of `trainer`.
    /// @return balance Total stake (free + locked), wei.
    /// @return locked Stake locked by jobs, wei.
    /// @return registered Whether the address registered.
    function accountOf(address trainer)
        external
        view
        returns (uint256 balance, uint256 locked, bool registered)
    {
        Account storage a = _accounts[trainer];
        return (a.balance, a.locked, a.registered);
    }

    // ---------------------------------------------------------------- internal hooks

    function _checkAmount(uint256 amount) internal pure {
        if (amount == 0) revert ZeroAmount();
        if (amount > type(uint96).max) revert AmountTooLarge(amount);
    }

    /// @dev Lock `amount` of `trainer`'s free stake (caller checked `registered`).
    function _lockStake(address trainer, uint96 amount) internal {
        Account storage a = _accounts[trainer];
        uint256 free = uint256(a.balance) - a.locked;
        if (amount > free) revert InsufficientFreeStake(free, amount);
        a.locked += amount;
    }

    /// @dev Release `amount` of locked stake back to free stake.
    function _unlockStake(address trainer, uint96 amount) internal {
        _accounts[trainer].locked -= amount;
    }

    /// @dev Remove `amount` of locked stake from the trainer entirely (balance and lock);
    ///      the caller moves the wei into a job's slashed pool, so Σ value is unchanged.
    function _slashStake(address trainer, uint96 amount) internal {
        Account storage a = _accounts[trainer];
        a.balance -= amount;
        a.locked -= amount;
    }
}
