#!/usr/bin/env python3
"""Checks the workspace's layering; run by scripts/test.sh.

Fails when
- a pure module (listed in PURE below, as each crate's lib.rs documents it)
  imports one of its crate's adapter modules or an I/O library;
- two modules of a crate import each other, directly or through others
  (an import between a module and its own parent or child does not count);
- the workspace's crates depend on each other in a cycle.

Only non-test code is read: a file is cut at its first `#[cfg(test)]`.
"""

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# crate directory -> modules that do no I/O (prefixes: "publish::sql" also
# covers its children)
PURE = {
    "common": ["secret", "es::credentials", "yaml_config", "error_chain"],
    "sync": [
        "id", "decode", "batch", "coalesce", "catch_up", "document", "bulk", "dlq", "offsets", "retry",
        "config", "write_health", "pg_ids", "sql", "publish::poll_sql", "publish::outbox_sql",
        "publish::watermark", "finding", "repeat_filter", "recover::range", "recover::rate",
        "recover::control", "recover::checkpoint", "recover::diff", "recover::progress",
        "lifecycle::names", "lifecycle::family", "lifecycle::mapping_diff",
    ],
    "shardplan": [
        "units", "rules", "input", "overrides", "plan", "template", "simulate",
        "cluster", "latency", "chart", "report", "error",
    ],
    "opsbot": [
        "cluster", "roll", "command", "format", "slowlog::parse", "slowlog::fingerprint",
        "slowlog::request", "slowlog::digest", "slowlog::report", "slowlog::chart",
        "metrics",
    ],
}

# crate directory -> its adapter modules (pure modules must not import them;
# prefixes, as in PURE)
ADAPTERS = {
    "common": ["es::client", "telemetry", "shutdown"],
    "sync": [
        "db", "es", "kafka", "kafka_log", "http", "publish::poller", "recover::source",
        "recover::store", "recover::lease", "recover::index", "lifecycle::admin",
        "lifecycle::targets",
    ],
    "opsbot": [
        "es", "action", "store", "audit", "telegram", "slowlog::source", "metrics_http",
    ],
}

# libraries that do I/O: a pure module names none of them
IO_LIBRARIES = re.compile(
    r"\b(sqlx|rdkafka|elasticsearch|teloxide|axum|reqwest|hyper)::"
    r"|\bstd::(net::(TcpStream|TcpListener|UdpSocket)|process)\b"
    r"|\btokio::(fs|net|process|signal)\b"
)

USE = re.compile(r"\buse\s+([^;]+);", re.S)
PATH = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")


def non_test_source(path):
    text = path.read_text()
    cut = text.find("#[cfg(test)]")
    text = text if cut < 0 else text[:cut]
    # comments are not imports
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def expand_use_tree(tree):
    """`crate::{a, b::{c, d}}` -> ["crate::a", "crate::b::c", "crate::b::d"]."""
    tree = re.sub(r"\s+", "", tree)
    if "{" not in tree:
        return [tree]
    head, rest = tree.split("{", 1)
    body = rest[: rest.rfind("}")]
    parts, depth, current = [], 0, ""
    for char in body:
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += char == "{"
        depth -= char == "}"
        current += char
    parts.append(current)
    return [path for part in parts if part for path in expand_use_tree(head + part)]


def module_files(src):
    """Module path (tuple) -> file, for a crate's src/ (binaries' own modules left out)."""
    modules = {}
    for path in src.rglob("*.rs"):
        relative = path.relative_to(src)
        if relative.parts[0] == "bin" or relative.name == "main.rs":
            continue
        parts = list(relative.with_suffix("").parts)
        if parts[-1] in ("mod", "lib"):
            parts = parts[:-1]
        modules[tuple(parts)] = path
    return modules


def imports(module, text, known):
    """The crate's modules that `module`'s source refers to."""
    paths = []
    for tree in USE.findall(text):
        paths.extend(expand_use_tree(tree))
    paths.extend(match.group(0) for match in PATH.finditer(text))
    found = set()
    for path in paths:
        segments = path.split("::")
        if segments[0] == "crate":
            base, rest = [], segments[1:]
        elif segments[0] == "super":
            base, rest = list(module), segments
            while rest and rest[0] == "super":
                base, rest = base[:-1], rest[1:]
        else:
            continue
        target = tuple(base)
        for segment in rest:
            if target + (segment,) in known:
                target = target + (segment,)
            else:
                break
        if target and target != module:
            found.add(target)
    return found


def related(a, b):
    shorter, longer = sorted((a, b), key=len)
    return longer[: len(shorter)] == shorter


def cycles(graph):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on_stack, result, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return result


def name(module):
    return "::".join(module) or "crate"


def check_crate(crate_dir, problems):
    modules = module_files(ROOT / crate_dir / "src")
    graph = {}
    for module, path in modules.items():
        text = non_test_source(path)
        graph[module] = {t for t in imports(module, text, modules) if not related(module, t)}
        pure = any(name(module) == p or name(module).startswith(p + "::") for p in PURE.get(crate_dir, []))
        if not pure:
            continue
        for target in graph[module]:
            if any(name(target) == a or name(target).startswith(a + "::") for a in ADAPTERS.get(crate_dir, [])):
                problems.append(f"{crate_dir}: pure module {name(module)} imports adapter {name(target)}")
        for match in IO_LIBRARIES.finditer(text):
            problems.append(f"{crate_dir}: pure module {name(module)} uses {match.group(0).rstrip(':')}")
    for listed in PURE.get(crate_dir, []) + ADAPTERS.get(crate_dir, []):
        if tuple(listed.split("::")) not in modules:
            problems.append(f"{crate_dir}: scripts/check_layers.py lists {listed}, which is no module")
    for component in cycles(graph):
        problems.append(f"{crate_dir}: import cycle between {', '.join(map(name, component))}")


def check_crate_graph(problems):
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())
    members = workspace["workspace"]["members"]
    graph = {}
    for member in members:
        manifest = tomllib.loads((ROOT / member / "Cargo.toml").read_text())
        edges = set()
        for section in ("dependencies", "dev-dependencies", "build-dependencies"):
            for dependency, spec in manifest.get(section, {}).items():
                if isinstance(spec, dict) and "path" in spec:
                    edges.add(Path(spec["path"]).name)
                elif isinstance(spec, dict) and spec.get("workspace"):
                    path = workspace["workspace"]["dependencies"].get(dependency, {})
                    if isinstance(path, dict) and "path" in path:
                        edges.add(Path(path["path"]).name)
        graph[member] = edges
    for component in cycles(graph):
        problems.append(f"crates depend on each other in a cycle: {', '.join(component)}")


def main():
    problems = []
    for crate_dir in sorted(p.parent.name for p in ROOT.glob("*/Cargo.toml")):
        check_crate(crate_dir, problems)
    check_crate_graph(problems)
    for problem in problems:
        print(f"layers: {problem}", file=sys.stderr)
    if problems:
        return 1
    print("layers: no cycles; pure modules import no adapter")
    return 0


if __name__ == "__main__":
    sys.exit(main())
