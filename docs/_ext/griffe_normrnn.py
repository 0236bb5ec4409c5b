"""The API reference's docstring dialect, rendered: a Griffe extension loaded by ``mkdocs.yml``.

normrnn's docstrings are written as PyTorch's are, for ``help()`` and an IDE first: Google sections (``Args:``,
``Shape:``, ``Example::``) with Sphinx roles (``:class:`~normrnn.ConvLSTM```) and ``.. math::`` blocks. The site
renders Markdown, so before mkdocstrings parses a docstring this extension rewrites it:

- ``:class:`X``` (also ``:func:``, ``:meth:``, ``:mod:``, ``:data:``, ``:attr:``) → a cross-reference link to X,
  resolved from the docstring's scope; a name nothing documents stays code;
- ``:math:`...``` → inline math, ``.. math::`` + an indented block → a display block (rendered to MathML by
  ``docs/_ext/mathml.py``);
- ``Example::`` + an indented block → a titled fenced code block.

It also puts every keyword argument in each class's own signature and Args table: ``**kwargs:
Unpack[SomeOptions]`` (a layer passing its cells' options on, a cell subclass its base's) becomes the named
keyword arguments, each with the default, type and description of the class that consumes it, so ``ConvLSTM``'s
entry shows all of its arguments in one place, as ``torch.nn.LSTM``'s does. "Bases:" leaves out private classes
(a cell's ``Conv`` and ``_LSTMBase``), which have no page.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|obj|exc):`(~?)([\w.]+)(?:\(\))?`")
_MATH = re.compile(r":math:`([^`]+)`")
_BLOCK = re.compile(r"^(?P<indent>[ ]*)(?:\.\. math::|(?P<title>[A-Z][\w ]*)::)[ ]*$")
_UNPACK = ("typing.Unpack", "typing_extensions.Unpack")


def _target(obj: griffe.Object, name: str, collection: Any) -> str | None:
    """The full path that ``name`` names from ``obj``'s scope, or None."""
    head, _, rest = name.partition(".")
    for path in (name, f"normrnn.{name}"):
        try:
            collection.get_member(path)
            return path
        except (KeyError, ValueError, AttributeError):
            pass
    try:
        base = obj.resolve(head)
    except (griffe.NameResolutionError, AttributeError):
        if obj.parent is not None and isinstance(obj, griffe.Function) and head in obj.parent.members:
            base = f"{obj.parent.path}.{head}"  # a sibling method
        else:
            return None
    return f"{base}.{rest}" if rest else base


def _links(text: str, obj: griffe.Object, collection: Any) -> str:
    def link(m: re.Match[str]) -> str:
        short, name = m.group(1) == "~", m.group(2)
        title = f"`{name.rsplit('.', 1)[-1] if short else name}`"
        path = _target(obj, name, collection)
        # optional: a target the site does not document (a private helper) shows as code instead of failing
        return f'<autoref identifier="{path}" optional><code>{title[1:-1]}</code></autoref>' if path else title

    return _MATH.sub(lambda m: f"${m.group(1)}$", _ROLE.sub(link, text))


def _blocks(text: str) -> str:
    """``.. math::`` and ``Title::`` with their indented blocks → display math and titled code fences."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        m = _BLOCK.match(lines[i])
        if not m:
            out.append(lines[i])
            i += 1
            continue
        indent, body = m.group("indent"), []
        i += 1
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
            body.append(lines[i])
            i += 1
        while body and not body[-1].strip():
            body.pop()
        code = textwrap.dedent("\n".join(body)).strip("\n").splitlines()
        if m.group("title") is None:  # one display block per paragraph: a blank line would end the block
            for para in "\n".join(code).split("\n\n"):
                out += ["", f"{indent}$$", *(f"{indent}{c}" for c in para.splitlines()), f"{indent}$$", ""]
        else:
            lang = "pycon" if code and code[0].lstrip().startswith(">>>") else "python"
            out += [f"{indent}{m.group('title')}:", "", f'{indent}```{lang}', *(f"{indent}{c}" for c in code),
                    f"{indent}```", ""]
    return "\n".join(out)


def _args(doc: griffe.Docstring | None) -> dict[str, str]:
    """``name → description`` from a docstring's Args section (``a, b: text`` documents both)."""
    if doc is None:
        return {}
    quiet = {"warn_unknown_params": False, "warn_missing_types": False}
    parsed = griffe.Docstring(doc.value, parent=doc.parent).parse("google", **quiet)
    out: dict[str, str] = {}
    for section in parsed:
        if section.kind is griffe.DocstringSectionKind.parameters:
            for param in section.value:
                for name in param.name.split(","):
                    out.setdefault(name.strip(), param.description)
    return out


def _classes(cls: griffe.Class) -> list[griffe.Class]:
    """Where ``cls``'s forwarded options are consumed: its bases, then its cells' (``cell_class``) classes."""
    found: list[griffe.Class] = []
    try:
        found += [cls, *(c for c in cls.mro() if isinstance(c, griffe.Class))]
    except ValueError:
        pass
    cell = cls.all_members.get("cell_class")
    if cell is not None and getattr(cell, "value", None) is not None:
        try:
            target = cls.modules_collection.get_member(cls.resolve(str(cell.value)))
            found += [target, *target.mro()]
        except (KeyError, ValueError, griffe.NameResolutionError, griffe.AliasResolutionError):
            pass
    return found


def _typed_dict_fields(td: griffe.Class) -> list[str]:
    names: list[str] = []
    for c in [td, *td.mro()]:
        names += [n for n, m in c.members.items() if isinstance(m, griffe.Attribute) and n not in names]
    return names


def _expand(cls: griffe.Class, described: dict[str, str]) -> None:
    """Replace ``__init__``'s ``**kwargs: Unpack[TD]`` with TD's options, and document every argument the class's
    docstring leaves out, from the classes that consume it (else from any class that documents that name)."""
    init = cls.members.get("__init__")
    if not isinstance(init, griffe.Function) or cls.docstring is None:
        return
    consumers = _classes(cls)[1:]
    var = next((p for p in init.parameters if p.kind is griffe.ParameterKind.var_keyword), None)
    ann = getattr(var, "annotation", None)
    if var is not None and isinstance(ann, griffe.ExprSubscript) and ann.canonical_path in _UNPACK:
        td = cls.modules_collection.get_member(ann.slice.canonical_path)
        del init.parameters[var.name]
        for name in _typed_dict_fields(td):
            source = next((c.members["__init__"] for c in consumers if isinstance(c.members.get("__init__"),
                           griffe.Function) and name in c.members["__init__"].parameters), None)
            if source is not None and name not in init.parameters:
                param = source.parameters[name]
                init.parameters[name] = griffe.Parameter(name, annotation=param.annotation, default=param.default,
                                                         kind=griffe.ParameterKind.keyword_only)
    own = _args(cls.docstring)
    extra = []
    for param in init.parameters:
        if param.name in ("self", *own) or param.kind is griffe.ParameterKind.var_keyword:
            continue
        doc = next((d for c in consumers if (d := _args(c.docstring).get(param.name))), described.get(param.name))
        if doc:
            extra.append(f"{param.name}: " + doc.replace("\n", "\n    "))
    if extra:
        cls.docstring.value = _add_args(cls.docstring.value, extra)


def _add_args(text: str, entries: list[str]) -> str:
    """``text`` with ``entries`` at the end of its ``Args:`` section (a new one before ``Shape:`` if it has none)."""
    lines = text.splitlines()
    body = [("    " + e).replace("\n", "\n    ") for e in entries]
    start = next((i for i, line in enumerate(lines) if line.strip() == "Args:"), None)
    if start is None:
        at = next((i for i, line in enumerate(lines) if line.strip() in ("Shape:", "Example::", "Examples::")),
                  len(lines))
        return "\n".join([*lines[:at], "Args:", *body, "", *lines[at:]])
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end].startswith("    ")):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return "\n".join([*lines[:end], *body, *lines[end:]])


class NormrnnDocstrings(griffe.Extension):
    """Rewrites normrnn's docstrings for the site (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        objects = list(_walk(pkg))
        found: dict[str, set[str]] = {}
        for obj in objects:
            if isinstance(obj, griffe.Class) and not obj.name.startswith("_"):
                for name, text in _args(obj.docstring).items():
                    found.setdefault(name, set()).add(text)
        # the fallback for an undocumented argument: a name that means one thing wherever it is documented
        described = {name: texts.pop() for name, texts in found.items() if len(texts) == 1}
        classes = [obj for obj in objects if isinstance(obj, griffe.Class)]
        for cls in classes:  # signatures first: they read the consumers' docstrings in their own dialect
            _expand(cls, described)
        for obj in objects:
            _expand_defaults(obj, loader.modules_collection)
        for cls in classes:  # "Bases:" names public classes only (after _expand, which walks the whole MRO)
            cls.bases = [b for b in cls.bases if _public(b, loader.modules_collection)]
        for obj in objects:
            if obj.docstring is not None:
                obj.docstring.value = _links(_blocks(obj.docstring.value), obj, loader.modules_collection)


def _constant(expr: Any, collection: Any) -> Any:
    """The value of a default written as a name of a normrnn constant (``DEFAULT_NORMS``); else ``expr``."""
    path = getattr(expr, "canonical_path", "") if isinstance(expr, griffe.ExprName) else ""
    try:
        target = collection.get_member(path) if path.startswith("normrnn") else None
    except (KeyError, ValueError, AttributeError):
        target = None
    return target.value if isinstance(target, griffe.Attribute) and target.value is not None else expr


def _expand_defaults(obj: griffe.Object, collection: Any) -> None:
    """Show a default that names a constant (``norms = DEFAULT_NORMS``) as its value, as ``help()`` does: in a
    dataclass's fields (its signature is built from them) and in a function's parameters."""
    if isinstance(obj, griffe.Attribute) and obj.value is not None:
        obj.value = _constant(obj.value, collection)
    elif isinstance(obj, griffe.Function):
        for param in obj.parameters:
            param.default = _constant(param.default, collection)


def _public(base: Any, collection: Any) -> bool:
    """Whether a base class has a page: any class outside normrnn, and normrnn's public ones (``Conv``,
    ``_LSTMBase`` are internals)."""
    path = getattr(base, "canonical_path", str(base))
    if not path.startswith("normrnn"):
        return True
    try:
        return bool(collection.get_member(path).is_public)
    except (KeyError, ValueError, AttributeError):
        return False


def _walk(obj: griffe.Object) -> Any:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)
