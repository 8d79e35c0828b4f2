"""The ``kvsops`` command line: sops-compatible commands plus the hosts' entry points."""
