"""The fault corpus: damaged, awkward and hostile inputs made on demand (`corpus.py`), run through the real CLI
by `tests/test_fault_corpus.py`."""
