"""Helm: the downloader plugin (``secrets://``, ``kvsops://`` ...), its URL grammar, ``kvsops+refs://``
and the ``kvsops helm`` wrapper."""
