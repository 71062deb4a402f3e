"""The ``autoctv`` command line: thin wrappers over the library (print and tqdm live here only)."""
