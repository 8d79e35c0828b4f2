"""kvsops: SOPS-compatible decryption at render time, in memory only."""

__version__ = "0.1.0"
