"""A Key Vault emulator for tests and the offline Azure demo (see server.py)."""

from .server import ALL_KEY_OPS, DEFAULT_TENANT, MI_PRINCIPAL, KeyVaultEmulator

__all__ = ["ALL_KEY_OPS", "DEFAULT_TENANT", "MI_PRINCIPAL", "KeyVaultEmulator"]
