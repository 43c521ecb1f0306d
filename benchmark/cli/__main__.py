"""`python -m benchmark.cli ...` and `torchrun -m benchmark.cli ...`."""

from benchmark.cli import main

main()
