#!/usr/bin/env python3
"""Checks every #include "..." in the tree against the layer diagram in README.md ("## Layers").

The diagram is read from the README itself, so the picture users read is the rule the code is held to:
  - a component (a path in the diagram's left column) includes its own headers and those of components on
    lower rows; a component on a higher row is an upward include, one on the same row a sibling include;
  - nobody includes another component's detail/ or internal/ folder;
  - bench/ and tests/ are users like examples/ and tools/: public headers only; tests/support/ is for *_test.cc;
  - every directory of ipc/ with sources is in the diagram.
Run by `./bazelw test //tests:layers_test`; each package hands over its sources with layer_sources()
(tests/layers.bzl), and a package of the source tree that is not listed in the test's data fails it.
"""
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
PRIVATE_FOLDERS = ("detail", "internal")
USER_DIRS = ("bench/", "tests/")  # users that the diagram does not draw
SCANNED = ("ipc/", "manager/", "tools/", "examples/") + USER_DIRS
SOURCE_SUFFIXES = (".h", ".cc")


def parse_layers(readme_text):
    """The diagram's rows, top first, as lists of component paths ending in '/'."""
    m = re.search(r"^## Layers\s*\n+```\n(.*?)\n```", readme_text, re.M | re.S)
    if not m:
        raise SystemExit("README.md has no '## Layers' section with a diagram in a code block")
    rows = []
    for line in m.group(1).splitlines():
        left = re.split(r"\s{3,}", line.strip(), maxsplit=1)[0]
        comps = [t.rstrip("/") + "/" for t in left.split() if not t.startswith("(")]
        if comps:
            rows.append(comps)
    return rows


def rank_of(rows):
    """component -> rank, 0 for the bottom row."""
    return {c: len(rows) - 1 - i for i, row in enumerate(rows) for c in row}


def component(path, ranks):
    """The longest diagram component that holds `path`, or None."""
    best = None
    for c in ranks:
        if path.startswith(c) and (best is None or len(c) > len(best)):
            best = c
    return best


def private_folder_of(path):
    """'ipc/queue/detail/' for 'ipc/queue/detail/wait.h'; None for a public header."""
    parts = path.split("/")
    for i, p in enumerate(parts[:-1]):
        if p in PRIVATE_FOLDERS:
            return "/".join(parts[: i + 1]) + "/"
    return None


def check_include(src, target, ranks):
    """A reason why `src` may not include `target`, or None when the include is allowed."""
    src_comp = component(src, ranks)
    tgt_comp = component(target, ranks)
    private = private_folder_of(target)
    if private:
        owner = private[: private.rstrip("/").rfind("/") + 1]
        if not src.startswith(owner):
            return f"reaches into {private}, which only {owner} may include"
    if target.startswith("tests/support/"):
        if src_comp is None or src.endswith("_test.cc"):
            return None
        return "includes tests/support/, which only tests (*_test.cc) and users may include"
    if tgt_comp is None:
        if target.startswith(USER_DIRS) and src.startswith(USER_DIRS):
            return None
        return f"includes {target}, which is in no component of the layer diagram"
    if src_comp is None or src_comp == tgt_comp:
        return None
    if ranks[tgt_comp] > ranks[src_comp]:
        return f"includes upward: {src_comp} is below {tgt_comp} in the layer diagram"
    if ranks[tgt_comp] == ranks[src_comp]:
        return f"includes a sibling: {src_comp} and {tgt_comp} are on one row of the layer diagram"
    return None


def find_root():
    """The directory under which README.md and the packages' sources are (the runfiles tree under Bazel)."""
    srcdir = os.environ.get("TEST_SRCDIR")
    if srcdir:
        return os.path.join(srcdir, os.environ.get("TEST_WORKSPACE", "__main__"))
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sources_under(root):
    found = []
    for top in SCANNED:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, top), followlinks=True):
            dirnames[:] = [d for d in dirnames if not d.startswith(("bazel-", "."))]
            for f in filenames:
                if f.endswith(SOURCE_SUFFIXES) and not f.endswith((".capnp.h", ".capnp.c++")):
                    found.append(os.path.relpath(os.path.join(dirpath, f), root))
    return sorted(found)


def packages_missing(root, checked):
    """Sources of the real source tree that this run did not see (their package is not in //tests:layers_test's
    data). Empty when the source tree cannot be found from the runfiles."""
    real_readme = os.path.realpath(os.path.join(root, "README.md"))
    real_root = os.path.dirname(real_readme)
    if real_root == os.path.realpath(root) or not os.path.exists(os.path.join(real_root, "WORKSPACE")):
        return []
    seen_dirs = {os.path.dirname(p) for p in checked}
    missing = []
    for path in sources_under(real_root):
        if os.path.dirname(path) not in seen_dirs:
            missing.append(path)
    return missing


def main():
    root = find_root()
    with open(os.path.join(root, "README.md"), encoding="utf-8") as f:
        rows = parse_layers(f.read())
    ranks = rank_of(rows)
    for needed in ("ipc/base/", "ipc/segment/", "manager/", "examples/"):
        if needed not in ranks:
            raise SystemExit(f"the README's layer diagram does not name {needed}: {rows}")

    files = sources_under(root)
    problems = []
    includes = 0
    for src in files:
        if src.startswith("ipc/") and component(src, ranks) is None:
            problems.append(f"{src}: its directory is in no component of the README's layer diagram")
        with open(os.path.join(root, src), encoding="utf-8") as f:
            text = f.read()
        for m in INCLUDE.finditer(text):
            includes += 1
            reason = check_include(src, m.group(1), ranks)
            if reason:
                line = text.count("\n", 0, m.start()) + 1
                problems.append(f'{src}:{line}: #include "{m.group(1)}" {reason}')
    for path in packages_missing(root, files):
        problems.append(f"{path}: not checked (call layer_sources() in its BUILD, list it in //tests:layers_test)")

    print("layers (top first): " + " | ".join(" ".join(r) for r in rows))
    print(f"checked {includes} includes in {len(files)} files")
    for p in problems:
        print("LAYER VIOLATION: " + p)
    if len(files) < 50:
        problems.append(f"only {len(files)} source files found under {root}: the packages' sources are missing")
        print("LAYER VIOLATION: " + problems[-1])
    # One case, the whole check; the summary line is what .ci/count_tests.py reads for shell tests.
    print(f"TEST-RESULT: {0 if problems else 1} passed, {1 if problems else 0} failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
