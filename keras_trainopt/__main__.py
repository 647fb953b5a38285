"""`python -m keras_trainopt ...` runs the command line."""

import sys

from keras_trainopt.cli import main

sys.exit(main())
