"""``python -m cgrseg``: the cgrseg command."""
import sys

from cgrseg.cli import main

sys.exit(main())
