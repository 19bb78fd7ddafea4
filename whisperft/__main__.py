import sys

from whisperft.cli import main

sys.exit(main())
