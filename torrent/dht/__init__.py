"""The DHT (BEP 5): routing table and lookups; the node runs on the session's UDP endpoint."""
