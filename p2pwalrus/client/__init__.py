"""Client side: store and read blobs through the network."""
