import sys

from channelapp.cli import main

sys.exit(main())
