"""Every JSON message of the WAL exchanges, typed (pure): ledger, governance votes, epoch chain.

One frozen value per request and per reply, checked when it is built and when it is parsed
(``from_json``), as h11's events are: a value that exists is well formed, so node and
client handle only these past the parsing boundary. What the envelopes carry is typed
already (orders, votes and certificates: ``orders.py``; governance votes: ``votes.py``;
epoch states and their certificates travel as frames of their own bytes: ``epoch_state.py``).

The wire stays as it was (the same field names and forms), so older peers interoperate:

==================  ===========================================  =====================================
protocol            request                                      reply (``{"ok": true, ...}``)
==================  ===========================================  =====================================
LEDGER_SIGN         ``{"signed"}``                               ``{"vote"}``
LEDGER_CONFIRM      ``{"certificate"}``                          ``{"new", "next_sequence"}``
LEDGER_ACCOUNT      ``{"address"}``                              ``{"authority", "epoch", "genesis",
                                                                 "known", "balance", "next_sequence",
                                                                 "pending", "stakes", "staked_with",
                                                                 "prices"}``
LEDGER_CERTS        ``{"sender", "first", "count"}``             ``{"certificates"}``
                    or ``{"recipient"}``                         or ``{"received"}``
LEDGER_SUMMARY      ``{"digest"?}``                              ``{"same": true}`` or
                                                                 ``{"digest", "accounts"}``
NODE_VOTE           ``{}``                                       ``{"vote"}`` (null: none)
EPOCH_CHAIN         ``{"from"}``                                 ``{"count"}``, then the frames
==================  ===========================================  =====================================

A refusal is ``{"ok": false, "error", "code"?, ...numbers}`` (:class:`Refused`);
:func:`parse_reply` gives the reply or the refusal. Every parse error is a ProtocolError
that names the field.

Modules: ``base.py`` (bounds, field readers, refusals, ``parse_reply``), ``ledger.py`` (the
LEDGER_* exchanges) and ``epoch.py`` (NODE_VOTE, EPOCH_CHAIN); every name is importable here.
"""

from __future__ import annotations

from .base import (  # noqa: F401  (importable from wal.messages, as before the split)
    CERT_PAGE, MAX_RECEIVED, MAX_SUMMARY_ACCOUNTS, MAX_STAKES, MAX_LINKS_PER_REPLY, MAX_ERROR, MAX_CODE,
    SUMMARY_DIGEST_HEX, Refused, parse_reply
)
from .ledger import (  # noqa: F401  (importable from wal.messages, as before the split)
    SignRequest, SignReply, ConfirmRequest, ConfirmReply, AccountRequest, AccountReply, CertsRequest,
    ReceivedRequest, parse_certs_request, CertsReply, ReceivedReply, SummaryRequest, SummaryReply
)
from .epoch import (  # noqa: F401  (importable from wal.messages, as before the split)
    VoteRequest, VoteReply, ChainRequest, ChainReply
)

__all__ = [
    "AccountReply", "AccountRequest", "CERT_PAGE", "CertsReply", "CertsRequest", "ChainReply", "ChainRequest",
    "ConfirmReply", "ConfirmRequest", "MAX_LINKS_PER_REPLY", "MAX_RECEIVED", "MAX_SUMMARY_ACCOUNTS",
    "ReceivedReply", "ReceivedRequest", "Refused", "SignReply", "SignRequest", "SummaryReply",
    "SummaryRequest", "VoteReply", "VoteRequest", "parse_certs_request", "parse_reply",
]
