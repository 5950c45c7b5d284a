"""`python -m minigan` runs the command line."""
import sys

from .run.cli import main

sys.exit(main())
