"""`python -m factory` runs the same command line as the `factory` script."""

import sys

from factory.cli.main import main

sys.exit(main())
