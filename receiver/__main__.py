"""`python -m receiver` runs the same CLI as the `haproxy-receiver` console script."""

from receiver.cli import main

main()
