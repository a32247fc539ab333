"""``python -m attnunet.cli``: the same as the ``attnunet`` command."""

import sys

from attnunet.cli import main

if __name__ == "__main__":
    sys.exit(main())
