"""`python -m dynamo.frontend`: the HTTP frontend alone, discovering workers (`in=http out=dyn`)."""

import sys

from dynamo.frontend.cli import main
from dynamo.frontend.process_exit import exit_process

if __name__ == "__main__":
    exit_process(main(["in=http", "out=dyn", *sys.argv[1:]], prog="python -m dynamo.frontend"))
