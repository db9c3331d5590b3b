"""``python -m hyclora_hooks`` is the ``hyclora`` command."""

import sys

from hyclora_hooks.tools.cli import main

sys.exit(main())
