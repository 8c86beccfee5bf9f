"""p2pwalrus: a Walrus-compatible decentralized blob store over libp2p."""

__version__ = "0.1.0"
