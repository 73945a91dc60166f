"""The Textual front end. It observes engine snapshots and sends commands; it
arrives with the TUI issue, once the engine publishes snapshots to render."""
