"""The MRBrainS18 unlearning benchmark on the real release (docs/benchmarks.md).

    .venv/bin/python benchmarks/mrbrains18.py [--forget 1] [--profile cpu|paper] [...]

Same as ``nnunet-unlearning benchmark``, with the release defaulting to ../shared/data/MRBrainS18 and the
folder to benchmark_run/; every option of the command is accepted.
"""

import sys
from pathlib import Path

from nnunet_unlearning.cli import main

RELEASE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "MRBrainS18"

if __name__ == "__main__":
    arguments = sys.argv[1:]
    if not arguments or arguments[0].startswith("-"):
        arguments = [str(RELEASE), *arguments]
    sys.exit(main(["benchmark", *arguments]))
