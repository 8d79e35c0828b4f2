"""Secret generation for kustomize: generator configs in, Kubernetes objects out, all in memory.

Kinds: ``kvsops/v1 SopsGenerator`` (ours), ``viaduct.ai/v1 ksops`` (KSOPS drop-in) and
``goabout.com/v1beta1 SopsSecretGenerator`` (kustomize-sopssecretgenerator drop-in).

:func:`generate` plans every config (parsing it and naming the files it needs), decrypts all the
files of the run concurrently with one Session, then builds the objects. Either every object is
returned or an error is raised: there is no partial result.
"""

from __future__ import annotations

import os
from collections.abc import Mapping  # isinstance checks at run time

from kvsops import errors
from kvsops.hosts.kustomize import common
from kvsops.hosts.kustomize.paths import Root
from kvsops.hosts.kustomize.sources import Sources

TYPE_CHECKING = False  # typing costs milliseconds of every kustomize generator's start-up
if TYPE_CHECKING:
    from typing import Any, Sequence

KINDS = {
    "SopsGenerator": "sopsgenerator",
    "ksops": "ksops",
    "SopsSecretGenerator": "goabout",
    "SopsSecret": "goabout",
}


def is_config(obj: Any) -> bool:
    return isinstance(obj, Mapping) and obj.get("kind") in KINDS


def _module(cfg: Mapping[str, Any]) -> Any:
    import importlib

    kind = cfg.get("kind")
    if kind not in KINDS:
        raise errors.GeneratorError(
            f"unsupported generator kind {kind!r}",
            where=common.label_of(cfg),
            hint="use kvsops/v1 SopsGenerator, viaduct.ai/v1 ksops or goabout.com/v1beta1 SopsSecretGenerator",
        )
    return importlib.import_module(f"kvsops.hosts.kustomize.{KINDS[str(kind)]}")


def generate(
    configs: Sequence[Mapping[str, Any]],
    *,
    root: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    session: Any = None,
) -> list[dict[str, Any]]:
    """Generate the objects of every config; paths resolve inside ``root`` (default: cwd)."""
    env = dict(os.environ) if env is None else env
    sources = Sources(Root.from_env(root or os.getcwd(), env), env, session)
    builders = []
    for cfg in configs:
        if not isinstance(cfg, Mapping):
            raise errors.GeneratorError("the generator config is not a mapping")
        builders.append(_module(cfg).plan(cfg, sources))
    sources.load()
    out: list[dict[str, Any]] = []
    for build in builders:
        out.extend(build(sources))
    return out
