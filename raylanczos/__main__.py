"""``python -m raylanczos`` is the ``raylanczos`` command."""

import sys

from raylanczos.cli import main

sys.exit(main())
