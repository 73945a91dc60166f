"""The DHT (BEP 5, with BEP 32 IPv6 and BEP 42 ids): routing tables, lookups, the peer store, saved state;
the node runs on the session's UDP endpoints (or its own)."""
