"""Azure Key Vault plumbing shared by the ``azure_kv`` key backend and Key Vault secret references:
settings, the lazily imported SDK, credential, transport, deadline and retries (``common``), and the
secrets client (``secrets``)."""
