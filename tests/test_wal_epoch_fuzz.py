"""Fuzzing the epoch-change parsers: consensus messages, epoch states, state certificates.

Random bytes and mutations of valid encodings (bytes flipped, cut, spliced, JSON fields
swapped for odd values). The bar: a parsed value, or the project's own refusal
(ProtocolError); any other exception fails. ``P2PWALRUS_FUZZ_EXAMPLES`` as the other
fuzz tests (default 300).
"""

from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pwalrus.core.wal.agreement import Commit, VoteKind, parse_message, proposer_for, sign_proposal, sign_vote
from p2pwalrus.core.wal.epoch_state import EpochState, StateCertificate, genesis_state
from p2pwalrus.errors import ProtocolError
from tests.tendermint_sim import CHAIN, HEIGHT, make_keys, signer

EXAMPLES = int(os.environ.get("P2PWALRUS_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=EXAMPLES <= 1000,
                suppress_health_check=list(HealthCheck))

KEYS = make_keys(4, seed=9)
MEMBERS = {p: 1 for p, _ in KEYS}
P0 = proposer_for(MEMBERS, CHAIN, HEIGHT, 0)
K0 = dict(KEYS)[P0]
PROPOSAL = sign_proposal(signer(K0), P0, CHAIN, HEIGHT, 0, b"ok:value", -1)
VOTES = tuple(sign_vote(signer(k), p, VoteKind.PRECOMMIT, CHAIN, HEIGHT, 0, PROPOSAL.id) for p, k in KEYS[:3])
VALID_MESSAGES = [PROPOSAL.to_bytes(), VOTES[0].to_bytes(),
                  sign_vote(signer(K0), P0, VoteKind.PREVOTE, CHAIN, HEIGHT, 3, None).to_bytes(),
                  Commit(PROPOSAL, VOTES).to_bytes()]
STATE = genesis_state("testnet", 16, {p: 10**9 for p, _ in KEYS}, parameters={"x": 1})
CERT = StateCertificate(1, 0, STATE.digest, tuple(sorted((v.sender, v.signature) for v in VOTES)))


@st.composite
def mutated(draw, valid: list[bytes]):
    data = bytearray(draw(st.sampled_from(valid)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "splice", "insert"]))
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        elif op == "cut":
            data = data[: draw(st.integers(0, len(data)))]
        elif op == "splice":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(max_size=40))
        elif op == "insert" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.sampled_from([0, 1, 2, 3, 0x7F, 0x80, 0xFF]))
    return bytes(data)


@FUZZ
@given(st.one_of(st.binary(max_size=600), mutated(VALID_MESSAGES)))
def test_consensus_message_parser_returns_a_message_or_refuses(data):
    try:
        parse_message(data, chain=CHAIN, height=HEIGHT, members=MEMBERS)
    except ProtocolError:
        pass


ODD = [None, True, -1, 2**64, 1e400, "x", [], {}, 1.5, "0" * 5000]


@st.composite
def json_mutated(draw, obj: dict):
    obj = json.loads(json.dumps(obj))
    target = obj
    path = draw(st.lists(st.integers(0, 10), max_size=3))
    for step in path:
        if isinstance(target, dict) and target:
            key = sorted(target)[step % len(target)]
            if isinstance(target[key], (dict, list)) and target[key]:
                target = target[key]
            else:
                target[key] = draw(st.sampled_from(ODD))
                break
        elif isinstance(target, list) and target:
            i = step % len(target)
            if isinstance(target[i], (dict, list)) and target[i]:
                target = target[i]
            else:
                target[i] = draw(st.sampled_from(ODD))
                break
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@FUZZ
@given(st.one_of(st.binary(max_size=300), mutated([STATE.to_bytes()]), json_mutated(STATE.to_json_obj())))
def test_epoch_state_parser_returns_a_state_or_refuses(data):
    try:
        EpochState.from_bytes(data)
    except ProtocolError:
        pass


@FUZZ
@given(st.one_of(st.binary(max_size=300), mutated([CERT.to_bytes()]), json_mutated(json.loads(CERT.to_bytes()))))
def test_state_certificate_parser_returns_a_certificate_or_refuses(data):
    try:
        StateCertificate.from_bytes(data)
    except ProtocolError:
        pass
