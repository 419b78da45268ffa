"""From the checkout: python scripts/suspects.py ... is python -m mwnet suspects ... (mwnet/tools/suspects.py, its --help)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mwnet.tools.suspects import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
