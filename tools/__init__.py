"""Command-line entry points of hyclora_hooks, installed as ``hyclora_hooks.tools`` (console script ``hyclora``)."""
