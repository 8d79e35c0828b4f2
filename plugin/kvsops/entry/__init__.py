"""Entry points: thin translations of each host's protocol (kustomize, Helm, Argo CD)."""
