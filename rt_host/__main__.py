import sys

from rt_host.cli import main

sys.exit(main())
