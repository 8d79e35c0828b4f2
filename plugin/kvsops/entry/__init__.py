"""Host entry points (kustomize, ...): each a thin translation of its host's protocol."""
