"""`python -m benchmarks`: the same as `evercall bench`."""

import sys

from benchmarks.cli import main

sys.exit(main())
