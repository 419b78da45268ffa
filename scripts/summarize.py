"""From the checkout: python scripts/summarize.py ... is python -m mwnet summarize ... (mwnet/tools/summarize.py, its --help)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mwnet.tools.summarize import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
