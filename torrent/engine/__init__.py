"""One torrent's logic: the swarm (peers, requests, verification, serving),
the piece picker, the choker and the rate limiters. Policy objects are
sans-IO; the swarm composes them with the peer and storage layers."""
