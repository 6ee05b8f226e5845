// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {FedMarket} from "./FedMarket.sol";

/// @title DisputeCourt
/// @notice Settles challenges of posted rounds by re-execution: a challenger bonds a digest it
///         computed; a committee of `COMMITTEE_SIZE` verifiers, drawn at random from the
///         court's pool (never the job's owner, aggregator, trainers or the challenger),
///         re-runs the round and votes a digest by commit–reveal; the majority decides.
///         A verifier enters the pool by locking `voteBond` (`joinPool`): the bond of its first
///         seat, held while it stays, so every pool entry can always serve on one committee
///         (the pool cannot be flooded with entries that never could). A member seated already
///         takes a further seat only with `voteBond` more of free stake (else it is skipped).
///         A member who misses or loses a vote is dropped from the pool.
///         Holds no ETH: every bond lives in the market's vault, moved through its court hooks.
/// @dev Invariants: at most one open dispute per job (the market's `disputeOpen`); the stake
///      this court holds locked for an account is exactly `voteBond × max(seats, inPool ? 1 :
///      0)` (`seatsOf`: its open committee seats); a dispute's state moves forward only:
///      Voting -> Upheld | NoDecision | Overturned -> Corrected | Lapsed.
contract DisputeCourt is ReentrancyGuard {
    /// @notice Members drawn per dispute.
    uint8 public constant COMMITTEE_SIZE = 3;
    /// @notice Part of its vote bond an absent or minority member loses (bps).
    uint16 public constant MISS_PENALTY_BPS = 5000;
    /// @notice Random pool positions tried when drawing a committee (bounds the loop). A job
    ///         has at most 256 trainers, who are never drawn: with 20 free members next to 256
    ///         of the job's trainers, 3 distinct free ones are found with probability > 1 − 1e-6.
    uint256 public constant MAX_DRAW_TRIES = 1024;

    uint8 internal constant STATE_NONE = 0;
    uint8 internal constant STATE_VOTING = 1;
    uint8 internal constant STATE_UPHELD = 2;
    uint8 internal constant STATE_OVERTURNED = 3;
    uint8 internal constant STATE_CORRECTED = 4;
    uint8 internal constant STATE_NO_DECISION = 5;
    uint8 internal constant STATE_LAPSED = 6;
    uint16 internal constant BPS = 10_000;
    /// @notice Shares of an overturned aggregator's bond (bps): the trainers the false result
    ///         harmed, the challenger (the rest goes to the members who voted the winning result).
    uint16 public constant HARMED_SHARE_BPS = 5000;
    uint16 public constant CHALLENGER_SHARE_BPS = 3000;
    /// @dev `StakeTransferred.why` codes for this court's payments.
    uint8 internal constant WHY_HARMED = 1;
    uint8 internal constant WHY_CHALLENGER = 2;
    uint8 internal constant WHY_VOTER = 3;
    uint8 internal constant WHY_CHALLENGE_LOST = 4;
    uint8 internal constant WHY_VOTE_PENALTY = 5;

    /// @notice The market whose rounds this court judges.
    FedMarket public immutable market;
    /// @notice Bond a challenger locks.
    uint96 public immutable challengeBond;
    /// @notice Bond each drawn committee member locks.
    uint96 public immutable voteBond;

    struct Dispute {
        uint256 jobId;
        uint32 round;
        uint8 state;
        address challenger;
        uint64 commitEnd;
        uint64 revealEnd;
        uint8 commits;
        uint8 reveals;
        uint64 correctBy; // overturned: until when only a correction can close the dispute
        bytes32 postedDigest;
        bytes32 challengerDigest;
        bytes32 winning;
        address[COMMITTEE_SIZE] members;
    }

    /// @notice Id the next challenge gets (ids start at 1).
    uint256 public nextDisputeId = 1;
    mapping(uint256 => Dispute) internal _disputes;
    mapping(uint256 => mapping(address => bytes32)) internal _voteCommitments;
    mapping(uint256 => mapping(address => bytes32)) internal _votes;
    /// @notice Latest dispute of each job (0 if none).
    mapping(uint256 => uint256) public latestDisputeOf;
    /// @dev Pool members (committees are drawn from here) and their 1-based positions.
    address[] internal _pool;
    mapping(address => uint256) internal _poolPosition;
    /// @notice Open committee seats of each account (disputes drawn, not yet resolved).
    mapping(address => uint256) public seatsOf;

    /// @notice Round `round` of job `jobId` was challenged; `members` must vote.
    event DisputeOpened(
        uint256 indexed disputeId,
        uint256 indexed jobId,
        uint32 round,
        address indexed challenger,
        bytes32 challengerDigest,
        bytes32 postedDigest,
        address[COMMITTEE_SIZE] members,
        uint64 commitEnd,
        uint64 revealEnd
    );
    /// @notice A committee member committed its vote.
    event VoteCommitted(uint256 indexed disputeId, address indexed member);
    /// @notice A committee member revealed the digest it computed.
    event VoteRevealed(uint256 indexed disputeId, address indexed member, bytes32 digest);
    /// @notice The dispute was decided (`state`: 2 upheld, 3 overturned, 5 no decision).
    event DisputeResolved(uint256 indexed disputeId, uint8 state, bytes32 winning);
    /// @notice The correct result of an overturned round was applied (by `poster`).
    event CorrectionPosted(uint256 indexed disputeId, address indexed poster);
    /// @notice Nobody posted a valid correction of an overturned round in time: the posted
    ///         round stands (as with no decision), so the job is not frozen for good.
    event CorrectionLapsed(uint256 indexed disputeId);
    /// @notice `verifier` joined the pool, locking `bond`.
    event PoolJoined(address indexed verifier, uint256 bond);
    /// @notice `verifier` left the pool: by itself (`disputeId` 0), or dropped after it
    ///         missed or lost its vote in dispute `disputeId`.
    event PoolLeft(address indexed verifier, uint256 indexed disputeId);

    error ZeroAddress();
    error SameAsPosted(bytes32 digest);
    error NoCommittee(uint256 found, uint256 needed);
    error UnknownDispute(uint256 disputeId);
    error WrongDisputeState(uint256 disputeId, uint8 state);
    error NotMember(uint256 disputeId, address account);
    error VoteCommitClosed(uint256 disputeId);
    error AlreadyVoted(uint256 disputeId, address member);
    error VoteRevealNotOpen(uint256 disputeId);
    error VoteMismatch(uint256 disputeId, address member);
    error VotingNotOver(uint256 disputeId, uint64 revealEnd);
    error CorrectionPending(uint256 disputeId, uint64 correctBy);
    error NotVerifier(address account);
    error AlreadyInPool(address account);
    error NotInPool(address account);

    /// @param market_ The market (which must then `bindCourt` this court).
    /// @param challengeBond_ Bond a challenger locks, wei.
    /// @param voteBond_ Bond each committee member locks, wei.
    constructor(FedMarket market_, uint96 challengeBond_, uint96 voteBond_) {
        if (address(market_) == address(0)) revert ZeroAddress();
        market = market_;
        challengeBond = challengeBond_;
        voteBond = voteBond_;
    }

    /// @notice Join the committee pool (a verifier, see `FedMarket.registerRole`), locking
    ///         `voteBond` of free stake (its first seat's bond) for as long as the caller stays
    ///         in it. A member still seated from before it left locks nothing more.
    /// @dev Reverts `NotVerifier`, `AlreadyInPool` or the market's `InsufficientFreeStake`.
    function joinPool() external nonReentrant {
        if (_poolPosition[msg.sender] != 0) revert AlreadyInPool(msg.sender);
        if (market.rolesOf(msg.sender) & market.ROLE_VERIFIER() == 0) {
            revert NotVerifier(msg.sender);
        }
        _pool.push(msg.sender);
        _poolPosition[msg.sender] = _pool.length;
        emit PoolJoined(msg.sender, voteBond);
        if (seatsOf[msg.sender] == 0) market.lockBond(msg.sender, voteBond);
    }

    /// @notice Leave the committee pool. With no open seat its bond is released (with the
    ///         market's bond cooldown); seats already taken stay bonded until they resolve.
    /// @dev Reverts `NotInPool`.
    function leavePool() external nonReentrant {
        if (_poolPosition[msg.sender] == 0) revert NotInPool(msg.sender);
        _leave(msg.sender, 0);
        if (seatsOf[msg.sender] == 0) market.releaseBond(msg.sender, voteBond);
    }

    /// @notice Number of verifiers in the committee pool.
    /// @return Count.
    function poolSize() external view returns (uint256) {
        return _pool.length;
    }

    /// @notice The `index`-th pool member (order changes as members leave).
    /// @param index Index below `poolSize()`.
    /// @return Member address.
    function poolAt(uint256 index) external view returns (address) {
        return _pool[index];
    }

    /// @notice Whether `account` is in the committee pool.
    /// @param account Account.
    /// @return True if a member.
    function inPool(address account) external view returns (bool) {
        return _poolPosition[account] != 0;
    }

    /// @notice Challenge the pending round `round` of job `jobId` with the digest the caller
    ///         computed (see `FedMarket.digestOf`), locking `challengeBond`. The caller must be
    ///         a trainer of the job or a verifier. Draws the committee.
    /// @param jobId Job.
    /// @param round The pending round.
    /// @param digest The result digest the challenger computed.
    /// @return disputeId The new dispute's id.
    // `market` is immutable and ours, and its court hooks call nothing outside it: no call made
    // here can re-enter this court (it is nonReentrant as well).
    // slither-disable-next-line reentrancy-no-eth
    function challenge(uint256 jobId, uint32 round, bytes32 digest)
        external
        nonReentrant
        returns (uint256 disputeId)
    {
        bytes32 posted = market.openDispute(jobId, round, msg.sender);
        if (digest == posted) revert SameAsPosted(digest);
        market.lockBond(msg.sender, challengeBond);
        disputeId = nextDisputeId++;
        Dispute storage d = _disputes[disputeId];
        d.jobId = jobId;
        d.round = round;
        d.state = STATE_VOTING;
        d.challenger = msg.sender;
        d.postedDigest = posted;
        d.challengerDigest = digest;
        FedMarket.JobView memory job = market.getJob(jobId);
        _draw(d, job.owner, job.aggregator, disputeId);
        uint64 commitEnd = uint64(block.timestamp) + job.postDuration;
        uint64 revealEnd = commitEnd + job.postDuration;
        d.commitEnd = commitEnd;
        d.revealEnd = revealEnd;
        latestDisputeOf[jobId] = disputeId;
        emit DisputeOpened(
            disputeId, jobId, round, msg.sender, digest, posted, d.members, commitEnd, revealEnd
        );
    }

    /// @notice Commit a vote (committee member): `keccak256(abi.encode(digest, salt, member,
    ///         disputeId))`, before `commitEnd`.
    /// @param disputeId Dispute.
    /// @param commitment Vote commitment.
    function commitVote(uint256 disputeId, bytes32 commitment) external {
        Dispute storage d = _voting(disputeId);
        _memberIndex(d, disputeId, msg.sender);
        if (block.timestamp >= d.commitEnd) revert VoteCommitClosed(disputeId);
        if (_voteCommitments[disputeId][msg.sender] != bytes32(0)) {
            revert AlreadyVoted(disputeId, msg.sender);
        }
        // A zero commitment would not count as a vote, yet raise `commits`: one member could
        // open the reveal phase early and let the others copy its revealed digest.
        if (commitment == bytes32(0)) revert VoteMismatch(disputeId, msg.sender);
        _voteCommitments[disputeId][msg.sender] = commitment;
        d.commits += 1;
        emit VoteCommitted(disputeId, msg.sender);
    }

    /// @notice Reveal a committed vote (committee member), once every member committed or the
    ///         commit phase ended, before `revealEnd`.
    /// @param disputeId Dispute.
    /// @param digest The digest the member computed.
    /// @param salt Salt of the commitment.
    function revealVote(uint256 disputeId, bytes32 digest, bytes32 salt) external {
        Dispute storage d = _voting(disputeId);
        _memberIndex(d, disputeId, msg.sender);
        bool open = d.commits == COMMITTEE_SIZE || block.timestamp >= d.commitEnd;
        if (!open || block.timestamp >= d.revealEnd) revert VoteRevealNotOpen(disputeId);
        if (_votes[disputeId][msg.sender] != bytes32(0)) revert AlreadyVoted(disputeId, msg.sender);
        bytes32 expected = keccak256(abi.encode(digest, salt, msg.sender, disputeId));
        if (digest == bytes32(0) || expected != _voteCommitments[disputeId][msg.sender]) {
            revert VoteMismatch(disputeId, msg.sender);
        }
        _votes[disputeId][msg.sender] = digest;
        d.reveals += 1;
        emit VoteRevealed(disputeId, msg.sender, digest);
    }

    /// @notice Decide the dispute (anyone) once every member revealed or the reveal phase
    ///         ended. A digest with a strict majority of the committee wins:
    ///         - the posted one: upheld; the challenger's bond goes half to the aggregator and
    ///           half to the majority;
    ///         - another: overturned; the challenger's bond is released and the correct result
    ///           must then be posted (`postCorrection`), which pays out the aggregator's bond;
    ///           if nobody posts it within the job's `postDuration`, anyone may `lapse` it;
    ///         - none: no decision; the posted round stands and the challenger's bond is released.
    ///         Members outside the majority (or who did not reveal) lose `MISS_PENALTY_BPS` of
    ///         their vote bond to the majority.
    /// @param disputeId Dispute.
    function resolve(uint256 disputeId) external nonReentrant {
        Dispute storage d = _voting(disputeId);
        if (d.reveals < COMMITTEE_SIZE && block.timestamp < d.revealEnd) {
            revert VotingNotOver(disputeId, d.revealEnd);
        }
        bytes32 winning = _majority(disputeId, d);
        uint8 state;
        if (winning == bytes32(0)) state = STATE_NO_DECISION;
        else if (winning == d.postedDigest) state = STATE_UPHELD;
        else state = STATE_OVERTURNED;
        d.state = state;
        d.winning = winning;
        emit DisputeResolved(disputeId, state, winning);
        _settleMembers(disputeId, d, winning);
        if (state == STATE_UPHELD) {
            _payChallengeBond(disputeId, d, winning);
        } else {
            market.releaseBond(d.challenger, challengeBond);
        }
        if (state == STATE_OVERTURNED) {
            d.correctBy = uint64(block.timestamp) + (d.revealEnd - d.commitEnd); // postDuration
        }
        if (state != STATE_OVERTURNED) market.upholdRound(d.jobId);
    }

    /// @notice Apply the correct result of an overturned round (anyone: it must hash to the
    ///         winning digest), with the posted result as evidence of what to undo.
    /// @param disputeId Dispute.
    /// @param fix The correct result.
    /// @param modelCid Storage address of the correct model.
    /// @param posted The result the aggregator posted.
    function postCorrection(
        uint256 disputeId,
        FedMarket.RoundResult calldata fix,
        string calldata modelCid,
        FedMarket.RoundResult calldata posted
    ) external nonReentrant {
        Dispute storage d = _disputes[disputeId];
        if (d.state != STATE_OVERTURNED) revert WrongDisputeState(disputeId, d.state);
        d.state = STATE_CORRECTED;
        emit CorrectionPosted(disputeId, msg.sender);
        address[] memory voters = _votersOf(disputeId, d, d.winning);
        // The challenger's share is for finding the right result, not for being first: one
        // that bonded another digest (say, the aggregator's own sybil racing honest
        // verifiers with a made-up one) gets none of it; the voters who found it do.
        address payee = d.challengerDigest == d.winning ? d.challenger : address(0);
        (address[] memory harmed, address aggregator, uint96 bond) =
            market.correctRound(d.jobId, d.winning, fix, modelCid, posted);
        _payOutBond(aggregator, bond, harmed, payee, voters);
    }

    /// @notice Close an overturned dispute whose correction nobody posted by `correctBy` (anyone):
    ///         the posted round stands, as with no decision. Without this, a winning digest
    ///         with no valid result behind it (or nobody willing to post it) would keep the job
    ///         disputed, and every stake and the reward in it locked, for good.
    /// @param disputeId Dispute.
    function lapse(uint256 disputeId) external nonReentrant {
        Dispute storage d = _disputes[disputeId];
        if (d.state != STATE_OVERTURNED) revert WrongDisputeState(disputeId, d.state);
        if (block.timestamp <= d.correctBy) revert CorrectionPending(disputeId, d.correctBy);
        d.state = STATE_LAPSED;
        emit CorrectionLapsed(disputeId);
        market.upholdRound(d.jobId);
    }

    /// @notice Everything about dispute `disputeId`.
    /// @param disputeId Dispute.
    /// @return The dispute record.
    function getDispute(uint256 disputeId) external view returns (Dispute memory) {
        return _disputes[disputeId];
    }

    /// @notice The digest `member` revealed in dispute `disputeId` (zero if none yet).
    /// @param disputeId Dispute.
    /// @param member Committee member.
    /// @return The revealed digest.
    function voteOf(uint256 disputeId, address member) external view returns (bytes32) {
        return _votes[disputeId][member];
    }

    /// @notice Whether `member` committed a vote in dispute `disputeId`.
    /// @param disputeId Dispute.
    /// @param member Committee member.
    /// @return True once committed.
    function hasCommitted(uint256 disputeId, address member) external view returns (bool) {
        return _voteCommitments[disputeId][member] != bytes32(0);
    }

    // ------------------------------------------------------------------ internals

    /// @dev Draw the committee: try up to `MAX_DRAW_TRIES` pseudo-random pool positions (from
    ///      the block hash and prevrandao of the challenge block: a block producer can bias
    ///      it, see SPEC.md). A member with no stake in the job takes a seat: its first on its
    ///      pool bond, a further one locking `voteBond` more of free stake (else skipped).
    // slither-disable-next-line reentrancy-no-eth
    function _draw(Dispute storage d, address owner, address aggregator, uint256 disputeId)
        internal
    {
        uint256 size = _pool.length;
        bytes32 seed =
            keccak256(abi.encode(blockhash(block.number - 1), block.prevrandao, disputeId));
        uint256 found = 0;
        for (uint256 i; size != 0 && i < MAX_DRAW_TRIES && found < COMMITTEE_SIZE; ++i) {
            // Not a secure random draw, and not meant to be one: SPEC.md "Security assumptions"
            // states how a block producer or a challenger can bias it.
            // slither-disable-next-line weak-prng
            address v = _pool[uint256(keccak256(abi.encode(seed, i))) % size];
            if (_conflicted(d, v, owner, aggregator, found) || !_takeSeat(v)) continue;
            d.members[found++] = v;
        }
        if (found < COMMITTEE_SIZE) revert NoCommittee(found, COMMITTEE_SIZE);
    }

    /// @dev Seat pool member `v`: free of seats, on its pool bond; else with `voteBond` more of
    ///      free stake locked. False (nothing changed) if it has not that much free stake.
    function _takeSeat(address v) internal returns (bool) {
        uint256 seats = seatsOf[v];
        if (seats != 0) {
            // A pool member is always registered (it took the verifier role).
            (uint256 balance, uint256 locked, bool registered) = market.accountOf(v);
            if (!registered || balance - locked < voteBond) return false;
        }
        seatsOf[v] = seats + 1;
        if (seats != 0) market.lockBond(v, voteBond);
        return true;
    }

    /// @dev Whether `v` has a stake in the dispute (or already holds one of its seats).
    function _conflicted(
        Dispute storage d,
        address v,
        address owner,
        address aggregator,
        uint256 found
    ) internal view returns (bool) {
        if (v == owner || v == aggregator || v == d.challenger) return true;
        for (uint256 k; k < found; ++k) {
            if (d.members[k] == v) return true;
        }
        return market.participantOf(d.jobId, v).joined;
    }

    /// @dev Remove `member` from the pool (swap with the last); the caller settles its bond.
    function _leave(address member, uint256 disputeId) internal {
        uint256 position = _poolPosition[member];
        address last = _pool[_pool.length - 1];
        _pool[position - 1] = last;
        _poolPosition[last] = position;
        _pool.pop();
        delete _poolPosition[member];
        emit PoolLeft(member, disputeId);
    }

    /// @dev The digest a strict majority of the committee revealed (zero if none).
    function _majority(uint256 disputeId, Dispute storage d) internal view returns (bytes32) {
        for (uint256 i; i < COMMITTEE_SIZE; ++i) {
            bytes32 v = _votes[disputeId][d.members[i]];
            if (v == bytes32(0)) continue;
            uint256 n = 0;
            for (uint256 k; k < COMMITTEE_SIZE; ++k) {
                if (_votes[disputeId][d.members[k]] == v) n++;
            }
            if (n * 2 > COMMITTEE_SIZE) return v;
        }
        return bytes32(0);
    }

    /// @dev Members who revealed `winning` (with no decision: every member who revealed).
    function _votersOf(uint256 disputeId, Dispute storage d, bytes32 winning)
        internal
        view
        returns (address[] memory voters)
    {
        voters = new address[](COMMITTEE_SIZE);
        uint256 n = 0;
        for (uint256 i; i < COMMITTEE_SIZE; ++i) {
            address m = d.members[i];
            bytes32 v = _votes[disputeId][m];
            if (v != bytes32(0) && (winning == bytes32(0) || v == winning)) voters[n++] = m;
        }
        assembly ("memory-safe") {
            mstore(voters, n)
        }
    }

    /// @dev Close every member's seat. A good member's seat bond is released unless it is the
    ///      pool bond of a member still in the pool with no other seat. Each other member
    ///      pays `MISS_PENALTY_BPS` of its seat bond in equal parts to the good ones (to the
    ///      challenger if none), gets the rest back and is dropped from the pool: a member
    ///      that does not vote, or votes against the majority, is not drawn again unless it
    ///      rejoins (with a fresh bond).
    // `market` is immutable and ours, and its hooks call nothing outside it: the writes after
    // its calls cannot be re-entered (resolve is nonReentrant as well).
    // slither-disable-next-line reentrancy-no-eth
    function _settleMembers(uint256 disputeId, Dispute storage d, bytes32 winning) internal {
        address[] memory good = _votersOf(disputeId, d, winning);
        uint96 bond = voteBond;
        uint96 penalty = uint96(uint256(bond) * MISS_PENALTY_BPS / BPS);
        for (uint256 i; i < COMMITTEE_SIZE; ++i) {
            address m = d.members[i];
            uint256 seats = seatsOf[m];
            seatsOf[m] = seats - 1;
            bool inPool = _poolPosition[m] != 0;
            bytes32 v = _votes[disputeId][m];
            if (v != bytes32(0) && (winning == bytes32(0) || v == winning)) {
                if (seats > 1 || !inPool) market.releaseBond(m, bond);
                continue;
            }
            if (inPool) _leave(m, disputeId);
            uint96 paid = _spread(m, good, penalty, d.challenger, WHY_VOTE_PENALTY);
            market.releaseBond(m, bond - paid);
        }
    }

    /// @dev Pay an overturned aggregator's whole job bond out of its locked stake:
    ///      `HARMED_SHARE_BPS` in equal parts to `harmed`, the voters' part in equal parts to
    ///      `voters`, the rest (every rounding remainder, and any part with no recipient) to
    ///      the challenger; with no challenger (its digest lost) the voters take its share too
    ///      and the first voter the rest.
    function _payOutBond(
        address aggregator,
        uint96 bond,
        address[] memory harmed,
        address challenger,
        address[] memory voters
    ) internal {
        uint96 left = bond;
        uint96 harmedPart = uint96(uint256(bond) * HARMED_SHARE_BPS / BPS);
        left -= _spread(aggregator, harmed, harmedPart, address(0), WHY_HARMED);
        uint96 votersPart = challenger == address(0)
            ? left
            : uint96(uint256(bond) * (BPS - HARMED_SHARE_BPS - CHALLENGER_SHARE_BPS) / BPS);
        left -= _spread(aggregator, voters, votersPart, address(0), WHY_VOTER);
        if (left != 0) {
            address payee = challenger == address(0) ? voters[0] : challenger;
            market.transferBond(aggregator, payee, left, WHY_CHALLENGER);
        }
    }

    /// @dev A losing challenger's bond: half to the aggregator, half to the majority voters.
    function _payChallengeBond(uint256 disputeId, Dispute storage d, bytes32 winning) internal {
        address[] memory voters = _votersOf(disputeId, d, winning);
        uint96 bond = challengeBond;
        uint96 paid = _spread(d.challenger, voters, bond / 2, address(0), WHY_CHALLENGE_LOST);
        address aggregator = market.getJob(d.jobId).aggregator;
        market.transferBond(d.challenger, aggregator, bond - paid, WHY_CHALLENGE_LOST);
    }

    /// @dev Pay `amount` of `from`'s locked bond in equal parts to `to` (all of it to
    ///      `fallbackTo` if `to` is empty and it is set); returns what was paid.
    function _spread(
        address from,
        address[] memory to,
        uint96 amount,
        address fallbackTo,
        uint8 why
    ) internal returns (uint96 paid) {
        uint256 n = to.length;
        if (n == 0) {
            if (fallbackTo == address(0) || amount == 0) return 0;
            market.transferBond(from, fallbackTo, amount, why);
            return amount;
        }
        uint96 each = uint96(amount / n);
        if (each == 0) return 0;
        for (uint256 i; i < n; ++i) {
            market.transferBond(from, to[i], each, why);
        }
        return uint96(each * n);
    }

    function _voting(uint256 disputeId) internal view returns (Dispute storage d) {
        d = _disputes[disputeId];
        if (d.state == STATE_NONE) revert UnknownDispute(disputeId);
        if (d.state != STATE_VOTING) revert WrongDisputeState(disputeId, d.state);
    }

    function _memberIndex(Dispute storage d, uint256 disputeId, address who)
        internal
        view
        returns (uint256)
    {
        for (uint256 i; i < COMMITTEE_SIZE; ++i) {
            if (d.members[i] == who) return i;
        }
        revert NotMember(disputeId, who);
    }
}
