"""The hosts kvsops runs in, one wing each: kustomize, Helm, Argo CD.

Each wing translates its host's protocol into calls on the layers below (``kvsops.api``, the key
policy, ``kvsops.refs``); wings never import each other.
"""
