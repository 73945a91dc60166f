import sys

from torrent.cli.main import main

sys.exit(main())
