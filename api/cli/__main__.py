"""``python -m api.cli``: the same entry point as the ``reunite`` console script."""

from api.cli.main import main

main()
