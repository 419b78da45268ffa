"""From the checkout: python scripts/runner.py ... is python -m mwnet runner ... (mwnet/tools/runner.py, its --help)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mwnet.tools.runner import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
