"""Trio services of a storage node: host, sliver store, membership, stream protocols."""
