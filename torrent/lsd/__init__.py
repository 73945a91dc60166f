"""Local Service Discovery (BEP 14): peers on the LAN, found through multicast announces."""
