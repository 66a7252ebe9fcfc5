"""Benchmarks for the protocol layers: ``python -m bench [fastagi|ami]``.

Each benchmark measures our code beside a bare Twisted baseline in the same
run and prints both with their ratio.  Nothing here asserts a timing; the
figures are for reading, not for tests.  See ``bench/README.md``.
"""
