"""``kvsops argocd init|generate``: the Argo CD config management plugin (see argocd/README.md).

argocd-cmp-server runs these in the application directory. ``generate`` writes only manifests to
stdout, in one write after the whole render has been validated; on any failure stdout stays empty
and the exit code is non-zero (an empty success plus auto-prune would delete the app's resources).
Options come from the environment only (``ARGOCD_APP_PARAMETERS``, ``PARAM_*``, ``ARGOCD_ENV_*``):
the plugin.yaml command has no shell to expand them.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO, Sequence

USAGE = """\
usage: kvsops argocd init        (plugin.yaml spec.init)
       kvsops argocd generate    (plugin.yaml spec.generate)
parameters: mode (auto|kustomize|helm|plain), values-files, release-name, namespace,
            kube-version, api-versions, set, allow-empty, recurse, references
            -- see argocd/README.md
"""


def main(argv: Sequence[str] | None = None, *, stdout: BinaryIO | None = None) -> int:
    from kvsops.report import DEBUG_BY_ENV, env_debug, guarded

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or env_debug(os.environ)
    args = [a for a in args if a != "--debug"]
    if args in ([], ["-h"], ["--help"], ["help"]):
        sys.stderr.write(USAGE)
        return 0 if args else 2
    out = stdout or sys.stdout.buffer

    def work() -> int:
        from kvsops import errors
        from kvsops.hosts.argocd import cmp

        if args == ["generate"]:
            manifests = cmp.generate(os.environ)
            out.write(manifests)
            out.flush()
            return 0
        if args == ["init"]:
            cmp.init(os.environ)
            return 0
        raise errors.UsageError(f"unknown argocd command {' '.join(args)[:80]!r}", hint="kvsops argocd --help")

    return guarded(work, debug=debug, debug_hint=DEBUG_BY_ENV)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
