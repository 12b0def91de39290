"""Verbs of the ``hugering`` command that live in their own modules.

Each module here registers itself with ``engine.cli.command`` when imported; ``engine.cli``
imports every module of this package (sorted by name) before building the parser.  Keep the
module's top level light -- import numba, numpy and the engine inside the handler -- so that
``hugering --help`` and a warm start stay fast.
"""
