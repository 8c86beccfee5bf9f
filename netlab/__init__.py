"""netlab: local p2pwalrus testnets with fault injection."""
