"""Files on disk: pieces in and out (off the event loop), verification in
batches, fast-resume data, the journal of verified pieces, atomic writes."""
