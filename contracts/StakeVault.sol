// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title StakeVault
/// @notice Registration and native-ETH stake accounting for every role: free balance, locked
///         stake, withdraw. A trainer's stake, an aggregator's bond and a verifier's bond are
///         the same kind of balance; roles say what an account offered to do. Jobs and
///         disputes lock, unlock, slash and move stake through the internal hooks below.
///         A released bond stays unwithdrawable for `BOND_COOLDOWN`.
/// @dev Invariants (hold after every external call):
///      (V1) for every account `a`: `a.locked <= a.balance`;
///      (V2) only `balance - locked` (free stake) can ever leave through `withdraw`;
///      (V3) `Σ a.balance` is exactly the part of `address(this).balance` owned by trainers
///           (the rest is job escrow + slashed stake not yet paid out, tracked by FedMarket).
///      Storage: one slot per account (uint120 + uint120 + bool + uint8 = 256 bits). 2^120 wei is
///      ~1.3e18 ETH, far above the total supply; every inflow is additionally capped at uint96.
abstract contract StakeVault is ReentrancyGuard {
    /// @dev One storage slot.
    struct Account {
        uint120 balance; // total stake held for the trainer (free + locked)
        uint120 locked; // part of `balance` locked by running / unsettled jobs
        bool registered;
        uint8 roles; // ROLE_AGGREGATOR | ROLE_VERIFIER
    }

    /// @notice Role bit: the account offers to aggregate jobs (its stake is its bond).
    uint8 public constant ROLE_AGGREGATOR = 1;
    /// @notice Role bit: the account may challenge any round and join the dispute court's
    ///         committee pool.
    uint8 public constant ROLE_VERIFIER = 2;
    /// @notice How long a released bond stays locked for withdrawal (slashes settle first).
    uint64 public constant BOND_COOLDOWN = 1 days;

    mapping(address => Account) internal _accounts;
    /// @dev Earliest withdrawal time after a bond was released.
    mapping(address => uint64) internal _cooldownUntil;

    /// @notice A trainer registered with an initial stake.
    event TrainerRegistered(address indexed trainer, uint256 stake);
    /// @notice A trainer added stake.
    event StakeDeposited(address indexed trainer, uint256 amount, uint256 balance);
    /// @notice A trainer withdrew free stake.
    event StakeWithdrawn(address indexed trainer, uint256 amount, uint256 balance);
    /// @notice An account took a role (`ROLE_AGGREGATOR` or `ROLE_VERIFIER`), adding `amount`.
    event RoleRegistered(address indexed account, uint8 role, uint256 amount, uint256 balance);
    /// @notice Locked stake moved from `from` to `to`'s free balance (a slashed bond's payout).
    event StakeTransferred(address indexed from, address indexed to, uint256 amount, uint8 why);
    /// @notice A bond was released; it can be withdrawn from `until`.
    event BondCooldown(address indexed account, uint256 amount, uint64 until);

    error AlreadyRegistered(address trainer);
    error NotRegistered(address trainer);
    error ZeroAmount();
    error AmountTooLarge(uint256 amount);
    error InsufficientFreeStake(uint256 available, uint256 requested);
    error TransferFailed(address to, uint256 amount);
    error InvalidRole(uint8 role);
    error BondCoolingDown(address account, uint64 until);

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

    /// @notice Take role `role` (`ROLE_AGGREGATOR` or `ROLE_VERIFIER`), registering the caller
    ///         if needed and adding `msg.value` wei (may be 0 for an account with stake) to its
    ///         stake, which is then its bond.
    /// @dev Reverts `InvalidRole` or `AmountTooLarge`.
    /// @param role The role bit to take.
    function registerRole(uint8 role) external payable {
        if (role != ROLE_AGGREGATOR && role != ROLE_VERIFIER) revert InvalidRole(role);
        if (msg.value > type(uint96).max) revert AmountTooLarge(msg.value);
        Account storage a = _accounts[msg.sender];
        uint120 balance = a.balance + uint120(msg.value);
        a.balance = balance;
        a.registered = true;
        a.roles |= role;
        emit RoleRegistered(msg.sender, role, msg.value, balance);
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
        uint64 until = _cooldownUntil[msg.sender];
        if (block.timestamp < until) revert BondCoolingDown(msg.sender, until);
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

    /// @notice Roles of `account` (bit set of `ROLE_AGGREGATOR`, `ROLE_VERIFIER`).
    /// @param account Account.
    /// @return Role bits.
    function rolesOf(address account) external view returns (uint8) {
        return _accounts[account].roles;
    }

    /// @notice When `account` may next withdraw (0 if never bonded).
    /// @param account Account.
    /// @return Unix time.
    function cooldownOf(address account) external view returns (uint64) {
        return _cooldownUntil[account];
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

    /// @dev Release a bond: unlock `amount` and start the withdrawal cooldown.
    function _releaseBond(address account, uint96 amount) internal {
        _accounts[account].locked -= amount;
        uint64 until = uint64(block.timestamp) + BOND_COOLDOWN;
        _cooldownUntil[account] = until;
        emit BondCooldown(account, amount, until);
    }

    /// @dev Move `amount` of `from`'s locked stake to `to`'s free balance (registering `to`).
    function _transferLocked(address from, address to, uint96 amount, uint8 why) internal {
        Account storage a = _accounts[from];
        a.balance -= amount;
        a.locked -= amount;
        Account storage b = _accounts[to];
        b.balance += amount;
        b.registered = true;
        emit StakeTransferred(from, to, amount, why);
    }

    /// @dev Credit `amount` wei already held by the contract to `to`'s free balance.
    function _credit(address to, uint96 amount) internal {
        Account storage b = _accounts[to];
        b.balance += amount;
        b.registered = true;
    }

    /// @dev Give back stake taken by `_slashStake` (a slash that a dispute overturned).
    function _restoreStake(address trainer, uint96 amount) internal {
        Account storage a = _accounts[trainer];
        a.balance += amount;
        a.locked += amount;
    }

    /// @dev Remove `amount` of locked stake from the trainer entirely (balance and lock);
    ///      the caller moves the wei into a job's slashed pool, so Σ value is unchanged.
    function _slashStake(address trainer, uint96 amount) internal {
        Account storage a = _accounts[trainer];
        a.balance -= amount;
        a.locked -= amount;
    }
}
