import sys

from camstream.cli import main

sys.exit(main())
