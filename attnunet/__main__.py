"""``python -m attnunet``: the same as the ``attnunet`` command."""

import sys

from attnunet.cli import main

sys.exit(main())
