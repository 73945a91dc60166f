"""One peer connection: an asyncio ``BufferedProtocol`` on uvloop that feeds
the wire codec and hands torrent-level events to its owner."""
