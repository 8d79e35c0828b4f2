"""``kvsops agent``: a long-running, same-user agent that keeps the expensive parts of a render warm.

Like ``ssh-agent`` and ``gpg-agent``, it holds what every short-lived process would otherwise build
again: the Azure SDK, one credential per identity with its token cache, a connection pool per vault,
a global bound on Key Vault calls, the age identities, and (opt-in) the bounded data-key cache.
Short-lived entry points (``kvsops decrypt``, ``kvsops-krm``, the Helm downloader, ``kvsops argocd
generate`` and reference resolution) use it when ``KVSOPS_AGENT_SOCK`` names its socket, and work
in-process as before when it does not.

- :mod:`kvsops.agent.protocol`  the wire format (versioned, length-prefixed, size-capped); no imports
- :mod:`kvsops.agent.client`    the client side every entry point imports: ``_socket`` and this
  package only, so that a client asking the agent to decrypt imports no YAML, crypto or Azure SDK
- :mod:`kvsops.agent.session`   a Session whose data keys and Key Vault secrets come from the agent
  (hosts that need the plaintext tree: the KRM function, Argo CD, references)
- :mod:`kvsops.agent.service`   the agent's side of each request (Sessions over shared state)
- :mod:`kvsops.agent.server`    the process: socket, peer check, limits, lifecycle, ``kvsops agent``

The agent sits beside the session layer (it runs Sessions; Sessions know it only as a ``remote``),
below the hosts and the CLI.
"""
