import sys

from edge_har.cli import main

sys.exit(main())
