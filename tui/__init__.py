"""The Textual front end (``torrent tui``): it reads the session's snapshots, reacts to its events and
sends its commands, and holds no protocol, picker or storage code of its own."""
