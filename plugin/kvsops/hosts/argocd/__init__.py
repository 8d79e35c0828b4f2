"""Argo CD config management plugin: settings (untrusted parameters), render modes, output checks.

``kvsops.hosts.argocd.main`` is the thin command; ``cmp`` orchestrates; ``kvsops.policy`` holds the key
policy and the ``session_from_env`` helper that child processes (KRM function, Helm downloader) call.
"""
