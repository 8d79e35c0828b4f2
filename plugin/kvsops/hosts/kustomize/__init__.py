"""kustomize: the exec KRM function and legacy exec plugin (``krm``), the generator kinds
(``sopsgenerator``, ``ksops``, ``goabout``), and ``install-plugins``."""
