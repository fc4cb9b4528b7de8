"""`python -m factory` runs the same command line as the `factory` script."""

import sys

from factory.cli import main

sys.exit(main())
