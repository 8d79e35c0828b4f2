"""A frozen, slotted record: what ``@dataclass(frozen=True)`` gives the format core, without
importing ``dataclasses`` on the render path (it pulls in ``inspect``, ``ast``, ``dis`` and
``tokenize``: several milliseconds of every Helm values file and kustomize generator).

    class KeyEntry(Record):
        __slots__ = _fields = ("kind", "fields")

    class Metadata(Record):
        __slots__ = _fields = ("groups", "rule")
        _defaults = {"groups": (), "rule": Factory(SelectionRule)}

Instances take their fields positionally or by name, compare and hash by value (same class only),
refuse attribute assignment, and copy with ``_replace(**changes)``.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, TypeVar

    _R = TypeVar("_R", bound="Record")


class Factory:
    """A default built per instance (``field(default_factory=...)``)."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], object]) -> None:
        self.make = make


class Record:
    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _defaults: dict[str, object] = {}

    def __init__(self, *args: object, **kwargs: object) -> None:
        fields = self._fields
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__} takes at most {len(fields)} arguments")
        put = object.__setattr__
        for name, value in zip(fields, args, strict=False):  # fewer args than fields: defaults
            if name in kwargs:
                raise TypeError(f"{type(self).__name__} got multiple values for {name!r}")
            put(self, name, value)
        for name in fields[len(args):]:
            if name in kwargs:
                value = kwargs.pop(name)
            elif name in self._defaults:
                value = self._defaults[name]
                if isinstance(value, Factory):
                    value = value.make()
            else:
                raise TypeError(f"{type(self).__name__} is missing {name!r}")
            put(self, name, value)
        if kwargs:
            raise TypeError(f"{type(self).__name__} got an unexpected field {next(iter(kwargs))!r}")
        post = getattr(self, "_post_init", None)
        if post is not None:
            post()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def _replace(self: _R, **changes: object) -> _R:
        values = {name: getattr(self, name) for name in self._fields}
        values.update(changes)
        return type(self)(**values)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((self.__class__.__name__, self._values()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({inner})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of a frozen {type(self).__name__}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of a frozen {type(self).__name__}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), self._values())
