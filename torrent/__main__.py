import sys

from torrent.cli import main

sys.exit(main())
