"""Jinja2 templates over decrypted values: sandboxed, bounded, and leak-free in their errors.

A template is repository content that runs inside a renderer holding keys. Jinja2's sandbox stops it
from reaching Python internals; it does not stop ``{{ ('a' * 1000000) * 3000 }}`` (gigabytes) or two
nested ``range(100000)`` loops (hours), and Jinja's error messages quote values
(``{{ [][d.pin] }}``: "list object has no element 987654"). So, on top of the immutable sandbox:

Bounds (each refuses with ``[LIMIT]``; nothing the template produced is emitted):

- **one value** the template makes (``*`` repetition, ``+`` and ``~`` concatenation, ``%`` and
  ``str.format`` formatting, filters, method calls, ``{% set %}`` blocks) weighs at most
  :data:`MAX_VALUE` (see :func:`weigh`: characters, plus items of containers); checked *before*
  the operation runs wherever its size can be computed, and on its result;
- **all values** it makes together weigh at most :data:`BUDGET`; integers at most
  :data:`MAX_INT_BITS` bits;
- **the output**: :data:`MAX_OUTPUT` characters;
- **steps** (loop iterations, calls, filters, operators): :data:`MAX_STEPS`;
- **time**: the render's deadline (``KVSOPS_DEADLINE_SECONDS``; :data:`DEFAULT_DEADLINE_SECONDS`
  when the caller has none);
- **methods**: only those of :data:`SAFE_METHODS` (string methods whose result size is bounded and
  checked; ``dict.items`` ...); ``include``/``import``/``extends`` have no loader.

Errors (:func:`render`): the template's name, the line and a fixed text per kind of error, never
Jinja's message, which can carry a value.

Jinja2 is imported only when a template is used (kvsops[templates]).
"""

from __future__ import annotations

import time

from kvsops import errors

TYPE_CHECKING = False  # typing costs milliseconds of every kustomize generator's start-up
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable

MAX_VALUE = 16 * 1024 * 1024
BUDGET = 128 * 1024 * 1024
MAX_OUTPUT = 16 * 1024 * 1024
MAX_STEPS = 1_000_000
MAX_INT_BITS = 1 << 16
DEFAULT_DEADLINE_SECONDS = 60.0
FILENAME = "<kvsops template>"
SAFE_METHODS = {
    str: frozenset({
        "capitalize", "casefold", "center", "count", "endswith", "find", "format", "format_map", "index",
        "isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "islower", "isnumeric", "isspace", "istitle",
        "isupper", "join", "ljust", "lower", "lstrip", "partition", "removeprefix", "removesuffix", "replace",
        "rfind", "rindex", "rjust", "rpartition", "rsplit", "rstrip", "split", "splitlines", "startswith",
        "strip", "swapcase", "title", "upper", "zfill",
    }),
    dict: frozenset({"get", "items", "keys", "values"}),
    list: frozenset({"count", "index"}),
    tuple: frozenset({"count", "index"}),
}
# Fixed texts per error kind: Jinja's own messages quote names and values.
_KINDS = (
    ("UndefinedError", "an undefined name, attribute or item"),
    ("SecurityError", "an operation the sandbox does not allow"),
    ("TemplateNotFound", "include, import and extends are not available"),
    ("TemplatesNotFound", "include, import and extends are not available"),
    ("TemplateSyntaxError", "syntax error"),
    ("FilterArgumentError", "a filter was given a wrong argument"),
    ("ZeroDivisionError", "division by zero"),
    ("OverflowError", "a number out of range"),
    ("KeyError", "a missing key"),
    ("IndexError", "an index out of range"),
    ("TypeError", "a value of the wrong type"),
    ("ValueError", "an invalid value"),
)


def _limit(what: str) -> errors.LimitExceeded:
    return errors.LimitExceeded(what)


# ----------------------------------------------------------------------------- sizes


def weigh(value: Any, limit: int = MAX_VALUE) -> int:
    """An upper bound of the characters ``str(value)`` takes, stopping early once past ``limit``: a
    string's length; inside a container (where ``repr`` or JSON escapes it) 12 per character; an integer's
    digits; the items and punctuation of containers; a constant for anything else."""
    if isinstance(value, (str, bytes)):
        return len(value) + 2
    total = 0
    stack = [value]
    while stack and total <= limit:
        v = stack.pop()
        if isinstance(v, dict):
            items: Iterable[Any] = [x for kv in v.items() for x in kv]
        elif isinstance(v, (list, tuple, set, frozenset)):
            items = v
        else:
            total += _scalar(v)
            attrs = _namespace_attrs(v)
            if attrs is not None:
                stack.append(attrs)
            continue
        total += 2 + 2 * len(v)
        if total > limit:
            break
        for x in items:
            if isinstance(x, (str, bytes)):
                total += 12 * len(x) + 2
            elif isinstance(x, (dict, list, tuple, set, frozenset)) or _namespace_attrs(x) is not None:
                stack.append(x)
            else:
                total += _scalar(x)
            if total > limit:
                break
    return total


def weigh_all(items: Iterable[Any], limit: int = MAX_VALUE) -> int:
    """The weights of ``items`` added up, stopping once past ``limit``."""
    total = 0
    for item in items:
        total += weigh(item, limit - total)
        if total > limit:
            break
    return total


def _namespace_attrs(v: Any) -> dict[str, Any] | None:
    """The attributes of a jinja2 ``namespace()``, which prints them. Looked up on that type only:
    any other attribute access could run an Undefined's error or an object's __getattr__."""
    if type(v).__name__ != "Namespace" or type(v).__module__ != "jinja2.utils":
        return None
    attrs = object.__getattribute__(v, "_Namespace__attrs")
    return attrs if isinstance(attrs, dict) else None


def _length(v: Any) -> int:
    return len(v) if isinstance(v, (str, bytes, list, tuple, dict, set, frozenset)) else 0


def _scalar(v: Any) -> int:
    if isinstance(v, bool) or v is None:
        return 5
    if isinstance(v, int):
        return v.bit_length() // 3 + 2
    return 32  # floats, and objects that print short (undefined, loop contexts)


class Meter:
    """What one render may still spend: steps, value weight, time."""

    __slots__ = ("steps", "spent", "deadline")

    def __init__(self, deadline: float) -> None:
        self.steps = 0
        self.spent = 0
        self.deadline = deadline

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise _limit(f"the template took more than {MAX_STEPS} steps (loop iterations, calls, operators)")
        if not self.steps & 0xFF:
            self.clock()

    def clock(self) -> None:
        if time.monotonic() > self.deadline:
            raise _limit("the template ran past the render's deadline (KVSOPS_DEADLINE_SECONDS)")

    def check(self, weight: int) -> None:
        """A value of ``weight`` is about to be made: refuse it when it is too large."""
        if weight > MAX_VALUE:
            raise _limit(f"the template would make a value larger than {MAX_VALUE} characters or items")

    def allow(self, weight: int) -> None:
        """A value of ``weight`` is made: check it and charge it to the budget."""
        self.check(weight)
        self.spent += weight
        if self.spent > BUDGET:
            raise _limit(f"the template made more than {BUDGET} characters or items in all")

    def made(self, value: Any) -> Any:
        """Charge a value an operation made: its own size (characters, or items of a container:
        what it refers to exists already; how big it prints is checked where it is printed)."""
        if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)):
            self.allow(len(value))
        elif isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
            raise _limit(f"the template would make an integer of more than {MAX_INT_BITS} bits")
        return value


# ----------------------------------------------------------------------------- formats


def _number(text: str) -> int:
    if len(text) > 9 or int(text) > MAX_VALUE:
        raise _limit(f"a format width or precision larger than {MAX_VALUE}")
    return int(text)


def _percent_widths(fmt: str) -> int:
    """The widths and precisions a ``%`` format string asks for (``*`` is refused: an argument)."""
    import re

    total = 0
    for m in re.finditer(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?", fmt):
        for part in m.groups():
            if part == "*":
                raise _limit("a format width taken from an argument (*) is not allowed")
            if part:
                total += _number(part)
    return total


def _brace_widths(fmt: str) -> int:
    """The widths and precisions a ``str.format`` string asks for (nested fields are refused)."""
    import re
    from string import Formatter

    total = 0
    try:
        fields = list(Formatter().parse(fmt))
    except ValueError:
        return 0  # str.format will raise the same
    for _lit, _name, spec, _conv in fields:
        if spec and "{" in spec:
            raise _limit("a format width taken from an argument ({...}) is not allowed")
        for digits in re.findall(r"\d+", spec or ""):
            total += _number(digits)
    return total


# ----------------------------------------------------------------------------- the environment


def _environment(meter: Meter) -> Any:
    from jinja2 import StrictUndefined
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Bounded(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "+", "%", "**", "//", "/", "-"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            meter.step()
            _before_binop(meter, operator, left, right)
            return meter.made(self.binop_table[operator](left, right))

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            meter.step()
            args, kwargs = _before_call(meter, __obj, args, kwargs, SecurityError)
            return meter.made(ImmutableSandboxedEnvironment.call(__self, __context, __obj, *args, **kwargs))

    env = Bounded(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True, auto_reload=False,
                  finalize=lambda value: _output(meter, value))
    env.concat = lambda parts: _join(meter, parts)  # type: ignore[method-assign]  # block captures, macros
    env.globals.pop("lipsum", None)
    env.filters = {name: _bounded_filter(meter, name, f) for name, f in env.filters.items()}
    env.filters["kvsops_concat"] = lambda items: _concat(meter, items)
    env.filters["kvsops_loop"] = lambda it: _loop(meter, it)
    return env


def _output(meter: Meter, value: Any) -> Any:
    if not isinstance(value, str):
        meter.check(weigh(value, MAX_OUTPUT))
    return value


def _join(meter: Meter, parts: Iterable[str]) -> str:
    parts = list(parts)
    meter.allow(sum(len(p) for p in parts))
    return "".join(parts)


def _concat(meter: Meter, items: list[Any]) -> str:
    """``a ~ b``: the pieces are weighed before they are turned into strings."""
    meter.step()
    meter.allow(weigh_all(items))
    return "".join(str(i) for i in items)


def _loop(meter: Meter, iterable: Any) -> Any:
    for item in iterable:
        meter.step()
        yield item


def _seq_times(seq: Any, n: Any) -> int | None:
    if isinstance(n, int) and isinstance(seq, (str, bytes, list, tuple)):
        return len(seq) * max(n, 0)
    return None


def _before_binop(meter: Meter, op: str, left: Any, right: Any) -> None:
    if op == "*":
        size = _seq_times(left, right)
        size = _seq_times(right, left) if size is None else size
        if size is not None:
            meter.check(size)
        elif isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise _limit(f"the template would make an integer of more than {MAX_INT_BITS} bits")
    elif op == "**" and isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        if left.bit_length() * right > MAX_INT_BITS:
            raise _limit(f"the template would make an integer of more than {MAX_INT_BITS} bits")
    elif op == "+" and isinstance(left, (str, bytes, list, tuple)) and type(left) is type(right):
        meter.check(len(left) + len(right))
    elif op == "%" and isinstance(left, str):
        meter.check(len(left) + _percent_widths(left) + weigh(right))


def _replace_size(s: str, old: Any, new: Any) -> int:
    if not isinstance(old, str) or not isinstance(new, str):
        return len(s)
    if len(new) <= len(old):
        return len(s)
    return len(s) + (len(s) + 1 if not old else len(s) // len(old)) * len(new)


def _width(value: Any) -> int:
    if isinstance(value, int) and value > MAX_VALUE:
        raise _limit(f"a width larger than {MAX_VALUE}")
    return value if isinstance(value, int) else 0


def _before_call(meter: Meter, obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                 refused: type[Exception]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    target = getattr(obj, "__wrapped__", obj)  # the sandbox wraps str.format
    owner = getattr(target, "__self__", None)
    name = getattr(target, "__name__", "")
    kind = next((t for t in SAFE_METHODS if isinstance(owner, t)), None)
    if kind is None:
        return args, kwargs  # macros, loop(), range, dict, namespace: no data is callable
    if name not in SAFE_METHODS[kind]:
        raise refused(f"method {name} is not allowed")
    if isinstance(owner, str):
        args = _before_str_method(meter, owner, name, args, kwargs)
    return args, kwargs


def _before_str_method(
    meter: Meter, s: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    if name in ("center", "ljust", "rjust", "zfill"):
        meter.check(max(len(s), _width(args[0] if args else 0)))
    elif name == "replace" and len(args) >= 2:
        meter.check(_replace_size(s, args[0], args[1]))
    elif name == "join" and args:
        items = list(args[0])
        meter.check(weigh_all(items) + len(s) * len(items))
        args = (items, *args[1:])
    elif name in ("format", "format_map"):
        meter.check(len(s) + _brace_widths(s) + weigh(list(args)) + weigh(kwargs))
    return args


# Filters that can make more than their input, and how big their result can be before it is made.
def _filter_size(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, tuple[Any, ...]]:
    value = args[0] if args else None
    rest = args[1:]

    def opt(i: int, key: str, default: Any) -> Any:
        return rest[i] if len(rest) > i else kwargs.get(key, default)

    if name == "center":
        return max(weigh(value), _width(opt(0, "width", 80))), args
    if name == "indent":
        width = opt(0, "width", 4)
        per_line = len(width) if isinstance(width, str) else _width(width)
        text = str(value) if isinstance(value, str) else ""
        return weigh(value) + (text.count("\n") + 1) * per_line, args
    if name == "wordwrap":
        width, wrap = opt(0, "width", 79), opt(2, "wrapstring", None)
        n = weigh(value)
        return n + (n // max(width if isinstance(width, int) else 1, 1) + 1) * len(wrap or "\n"), args
    if name == "format":
        fmt = value if isinstance(value, str) else ""
        return len(fmt) + _percent_widths(fmt) + weigh(list(rest)) + weigh(kwargs), args
    if name == "join":
        items = list(value) if value is not None else []
        sep = opt(0, "d", "")
        return weigh_all(items) + len(str(sep)) * len(items), (items, *rest)
    if name == "replace":
        s = value if isinstance(value, str) else ""
        return _replace_size(s, opt(0, "old", ""), opt(1, "new", "")), args
    if name in ("batch", "slice"):
        return _length(value) + _width(opt(0, "linecount" if name == "batch" else "slices", 0)), args
    if name == "sum":
        items = list(value) if value is not None else []
        return sum(_length(i) for i in items) + _length(opt(1, "start", 0)), (items, *rest)
    if name == "list":
        return _length(value), args
    if name == "string":
        return weigh(value), args
    if name == "urlize":
        extra = len(str(opt(2, "target", None) or "")) + len(str(opt(3, "rel", None) or "")) + 64
        text = str(value) if isinstance(value, str) else ""
        return 2 * len(text) + (text.count(" ") + 1) * extra, args
    if name in ("pprint", "tojson", "xmlattr", "e", "escape", "forceescape", "urlencode"):
        return weigh([value]), args  # as if nested: 12 per character covers every escape
    return 0, args


def _bounded_filter(meter: Meter, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    from functools import wraps

    skip = 1 if hasattr(func, "jinja_pass_arg") else 0  # context, eval context or environment first

    @wraps(func)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        meter.step()
        size, real = _filter_size(name, args[skip:], kwargs)
        if size:
            meter.check(size)
        return meter.made(func(*args[:skip], *real, **kwargs))

    return bounded


# ----------------------------------------------------------------------------- compile and render


def _bounded_ast(env: Any, source: str) -> Any:
    """The template's syntax tree with every ``~`` and every loop routed through the meter."""
    from jinja2 import nodes
    from jinja2.visitor import NodeTransformer

    class Route(NodeTransformer):
        def visit_Concat(self, node: Any) -> Any:  # noqa: N802
            node = self.generic_visit(node)
            return nodes.Filter(nodes.List(node.nodes, lineno=node.lineno), "kvsops_concat", [], [], None, None,
                                lineno=node.lineno)

        def visit_For(self, node: Any) -> Any:  # noqa: N802
            node = self.generic_visit(node)
            node.iter = nodes.Filter(node.iter, "kvsops_loop", [], [], None, None, lineno=node.lineno)
            return node

    tree = env.parse(source, filename=FILENAME)
    return Route().visit(tree)


def _render_bounded(env: Any, meter: Meter, source: str, context: dict[str, Any]) -> str:
    code = env.compile(_bounded_ast(env, source), filename=FILENAME)
    template = env.template_class.from_code(env, code, env.make_globals(None), None)
    out: list[str] = []
    size = 0
    for chunk in template.generate(context):
        size += len(chunk)
        if size > MAX_OUTPUT:
            raise _limit(f"the template's output is larger than {MAX_OUTPUT} characters")
        out.append(chunk)
        meter.clock()
    return "".join(out)


def _line(exc: BaseException) -> int | None:
    """The template line an error happened on (Jinja rewrites its tracebacks to template lines)."""
    line = getattr(exc, "lineno", None)
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line if isinstance(line, int) else None


def _kind(exc: BaseException) -> str:
    for cls in type(exc).__mro__:
        for name, text in _KINDS:
            if cls.__name__ == name:
                return text
    return "the template failed"


def render(source: str, context: dict[str, Any], where: str, deadline: float | None = None) -> str:
    """Render ``source`` with ``context``, bounded (see the module docstring). ``deadline`` is a
    ``time.monotonic()`` value (the render's; now + DEFAULT_DEADLINE_SECONDS when None)."""
    try:
        import jinja2  # noqa: F401
    except ImportError:
        raise errors.MissingDependency(
            "templates need Jinja2", where=where, hint="install kvsops[templates] (pip install 'kvsops[templates]')"
        ) from None
    meter = Meter(time.monotonic() + DEFAULT_DEADLINE_SECONDS if deadline is None else deadline)
    try:
        return _render_bounded(_environment(meter), meter, source, context)
    except errors.KvsopsError as exc:
        at = _line(exc)
        raise type(exc)(f"template limit{f' at line {at}' if at else ''}: {exc.message}", where=where) from None
    except (RecursionError, MemoryError) as exc:
        at = _line(exc)
        what = "recursion too deep" if isinstance(exc, RecursionError) else "out of memory"
        raise errors.LimitExceeded(f"template limit{f' at line {at}' if at else ''}: {what}", where=where) from None
    except Exception as exc:  # noqa: BLE001 - any failure: its kind and line, never its text
        at = _line(exc)
        raise errors.GeneratorError(
            f"template error{f' at line {at}' if at else ''}: {_kind(exc)} ({type(exc).__name__})", where=where
        ) from None
