"""The ``torrent`` command: a front end of the session API (``main``), the
runner that drives one torrent (``runner``) and the demo payload (``demo``)."""
