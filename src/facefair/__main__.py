import sys

from facefair.cli import main

sys.exit(main())
