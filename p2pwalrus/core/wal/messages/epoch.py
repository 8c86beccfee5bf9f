"""NODE_VOTE (a node's governance vote) and EPOCH_CHAIN (the decided epoch links)."""

from __future__ import annotations

from dataclasses import dataclass

from ....errors import ProtocolError
from ..votes import SignedNodeVote
from .base import (
    MAX_LINKS_PER_REPLY, _U64, _obj, _get, _typed, _Reply, _ok
)


# --- node-vote ---


@dataclass(frozen=True)
class VoteRequest:
    def to_json(self) -> dict:
        return {}

    @classmethod
    def from_json(cls, obj) -> "VoteRequest":
        _obj(obj, "a vote request")
        return cls()


@dataclass(frozen=True)
class VoteReply(_Reply):
    vote: SignedNodeVote | None  # None: the node votes nothing

    def __post_init__(self) -> None:
        if self.vote is not None:
            _typed(self.vote, SignedNodeVote, "vote")

    def to_json(self) -> dict:
        return {"ok": True, "vote": self.vote.to_json() if self.vote is not None else None}

    @classmethod
    def from_json(cls, obj) -> "VoteReply":
        vote = _ok(obj, "a vote reply").get("vote")
        return cls(SignedNodeVote.from_json(vote) if vote is not None else None)


# --- epoch-chain ---


@dataclass(frozen=True)
class ChainRequest:
    """The decided links from epoch ``first`` on (``{"from": first}``)."""

    first: int

    def __post_init__(self) -> None:
        if type(self.first) is not int or not 1 <= self.first <= _U64:
            raise ProtocolError("'from' must be an epoch of at least 1")

    def to_json(self) -> dict:
        return {"from": self.first}

    @classmethod
    def from_json(cls, obj) -> "ChainRequest":
        return cls(_get(_obj(obj, "a chain request"), "from"))


@dataclass(frozen=True)
class ChainReply(_Reply):
    """How many links follow, each as two frames: the state's bytes, its certificate's."""

    count: int

    def __post_init__(self) -> None:
        if type(self.count) is not int or not 0 <= self.count <= MAX_LINKS_PER_REPLY:
            raise ProtocolError(f"a chain reply holds at most {MAX_LINKS_PER_REPLY} links")

    def to_json(self) -> dict:
        return {"ok": True, "count": self.count}

    @classmethod
    def from_json(cls, obj) -> "ChainReply":
        return cls(_get(_ok(obj, "a chain reply"), "count"))
