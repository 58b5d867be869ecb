"""Apply an SRL action with ast-grep: a pure function of the action and the files.

``pattern`` is an ast-grep pattern; ``replacement`` a template in which ``$NAME`` stands for the
text a single metavariable matched and ``$$$NAME`` for the whole span a multi-node metavariable
matched (separators included); ``constraints`` are ast-grep rule constraints on metavariables
(``{"NAME": {"regex": "^get"}}``). ``paths`` are globs over the repository's relative paths
(``*`` stays within a folder, ``**`` crosses folders).
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache

from halo_ray.srl.trace import LANGUAGES, Action

SUFFIXES = {"python": (".py",), "javascript": (".js", ".mjs", ".cjs"), "java": (".java",)}
MAX_DIFF_CHARS = 4000
_META = re.compile(r"\$\$\$([A-Z_][A-Z0-9_]*)|\$([A-Z_][A-Z0-9_]*)")


@lru_cache(maxsize=256)
def glob_regex(glob: str) -> re.Pattern:
    """The regex of a path glob: ``**/`` any folders (none included), ``**`` anything, ``*`` and ``?`` within a name."""
    out, i = [], 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def in_scope(path: str, globs) -> bool:
    return any(glob_regex(g).match(path) for g in globs)


def _fill(template: str, match, source: str) -> str:
    def sub(m: re.Match) -> str:
        if m.group(1):
            nodes = match.get_multiple_matches(m.group(1))
            if not nodes:
                return ""
            return source[nodes[0].range().start.index:nodes[-1].range().end.index]
        node = match.get_match(m.group(2))
        return node.text() if node is not None else m.group(0)

    return _META.sub(sub, template)


def _rewrite(source: str, action: Action) -> tuple[str, int]:
    from ast_grep_py import SgRoot

    root = SgRoot(source, action.language).root()
    rule = {"rule": {"pattern": action.pattern}}
    if action.constraints:
        rule["constraints"] = action.constraints
    edits, end = [], -1
    for match in sorted(root.find_all(rule), key=lambda m: m.range().start.index):
        start, stop = match.range().start.index, match.range().end.index  # str (code point) offsets
        if start < end:  # nested in a match already rewritten
            continue
        edits.append((start, stop, _fill(action.replacement, match, source)))
        end = stop
    out, pos = [], 0
    for start, stop, text in edits:
        out += [source[pos:start], text]
        pos = stop
    out.append(source[pos:])
    return "".join(out), len(edits)


def apply_action(action: Action, files: dict[str, str]) -> tuple[dict[str, str], dict]:
    """Rewrite ``files`` with ``action``; the input is not modified.

    Args:
        action: a parsed action.
        files: relative path -> text of a repository.
    Returns:
        ``(new_files, report)``; the report has ``ok`` (no error and at least one match), ``matches``
        {path: count} for files in scope, ``changed`` (paths whose text changed), ``errors``
        (["path: message"]: a pattern or constraint ast-grep rejects), ``diff`` (unified, capped).
    """
    report = {"ok": False, "matches": {}, "changed": [], "errors": [], "diff": ""}
    if action.language not in LANGUAGES:
        report["errors"].append(f"language {action.language!r} is not one of {', '.join(LANGUAGES)}")
        return dict(files), report
    new_files = dict(files)
    diff = []
    for path in sorted(files):
        if not path.endswith(SUFFIXES[action.language]) or not in_scope(path, action.paths):
            continue
        try:
            text, count = _rewrite(files[path], action)
        except Exception as exc:  # noqa: BLE001 - ast-grep raises plain Exception/RuntimeError for bad rules
            report["errors"].append(f"{path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            continue
        report["matches"][path] = count
        if text != files[path]:
            new_files[path] = text
            report["changed"].append(path)
            diff.extend(difflib.unified_diff(files[path].splitlines(True), text.splitlines(True),
                                             f"a/{path}", f"b/{path}"))
    report["diff"] = "".join(diff)[:MAX_DIFF_CHARS]
    report["ok"] = not report["errors"] and sum(report["matches"].values()) > 0
    return new_files, report
