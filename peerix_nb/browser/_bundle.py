"""One ES module out of the plain ESM files beside this module, built at import time.

Why: anywidget loads exactly one `_esm` module per widget, and a module loaded from a string
(or a blob: URL) cannot resolve relative imports such as `import ... from "./codec.js"`. The
files stay real ES modules (Node imports them directly in tests/test_browser_js.py); this
bundler turns each dependency into a function scope:

    const __peerix_codec = (() => { ...codec.js without `export`...; return { encode, ... }; })();

and each `import { a, b as c } from "./codec.js";` into `const { a, b: c } = __peerix_codec;`.
Only the forms used in this package are supported (named imports from relative files; `export`
before function/class/const/let declarations; `export { a, b };`; `export default` in the entry
module). Anything else raises at import time, so a new construct cannot slip through silently.
Nothing is fetched at run time: the result is a string handed to anywidget.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

HERE = Path(__file__).parent

_IMPORT = re.compile(r'^import\s*\{([^}]*)\}\s*from\s*"\./([\w.-]+\.js)";\s*$', re.MULTILINE)
_ANY_IMPORT = re.compile(r"^\s*import\b", re.MULTILINE)
_EXPORT_DECL = re.compile(
    r"^export\s+(?:async\s+)?(?:function\*?|class|const|let)\s+([A-Za-z_$][\w$]*)", re.MULTILINE
)
_EXPORT_LIST = re.compile(r"^export\s*\{([^}]*)\};?\s*$", re.MULTILINE)
_EXPORT_DEFAULT = re.compile(r"^export\s+default\b", re.MULTILINE)


def _scope_name(filename: str) -> str:
    return "__peerix_" + re.sub(r"\W", "_", filename.removesuffix(".js"))


def _names(spec: str) -> list[tuple[str, str]]:
    """`a, b as c` -> [("a", "a"), ("b", "c")] (exported name, local name)."""
    pairs = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        exported, _, local = item.partition(" as ")
        pairs.append((exported.strip(), (local or exported).strip()))
    return pairs


def _rewrite_imports(source: str, filename: str) -> tuple[str, list[str]]:
    deps: list[str] = []

    def replace(match: re.Match[str]) -> str:
        dep = match.group(2)
        deps.append(dep)
        binds = ", ".join(e if e == loc else f"{e}: {loc}" for e, loc in _names(match.group(1)))
        return f"const {{ {binds} }} = {_scope_name(dep)};"

    out = _IMPORT.sub(replace, source)
    if _ANY_IMPORT.search(out):
        raise ValueError(f'{filename}: only `import {{ ... }} from "./file.js";` is supported')
    return out, deps


def _module(filename: str) -> tuple[str, list[str], list[str]]:
    """(body with imports rewritten and `export` removed, exported names, dependencies)."""
    source = (HERE / filename).read_text(encoding="utf-8")
    body, deps = _rewrite_imports(source, filename)
    exports = _EXPORT_DECL.findall(body)
    for match in _EXPORT_LIST.finditer(body):
        exports += [local for _, local in _names(match.group(1))]
    body = _EXPORT_LIST.sub("", body)
    body = re.sub(
        r"^export\s+(?=(?:async\s+)?(?:function|class|const|let)\b)", "", body, flags=re.M
    )
    return body, exports, deps


@functools.cache
def bundle(entry: str) -> str:
    """The ES module text for `entry` (a .js file beside this module) and its dependencies."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(filename: str, stack: tuple[str, ...]) -> None:
        if filename in stack:
            raise ValueError(f"import cycle: {' -> '.join((*stack, filename))}")
        if filename in seen:
            return
        _, _, deps = _module(filename)
        for dep in deps:
            visit(dep, (*stack, filename))
        seen.add(filename)
        order.append(filename)

    visit(entry, ())
    parts = [
        f"// peerix_nb browser bundle: {', '.join(order)} (built by peerix_nb/browser/_bundle.py)\n"
    ]
    for filename in order[:-1]:
        body, exports, _ = _module(filename)
        if _EXPORT_DEFAULT.search(body):
            raise ValueError(f"{filename}: `export default` is only allowed in the entry module")
        parts.append(
            f"// ---- {filename} ----\nconst {_scope_name(filename)} = (() => {{\n{body}\n"
            f"return {{ {', '.join(exports)} }};\n}})();\n"
        )
    body, _, _ = _module(entry)
    parts.append(f"// ---- {entry} ----\n{body}")
    return "\n".join(parts)


__all__ = ["bundle"]
