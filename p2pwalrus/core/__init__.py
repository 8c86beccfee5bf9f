"""The pure core: encoding, metadata, placement, records and certificates. No I/O here."""
