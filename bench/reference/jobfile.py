"""Reads an mgca-hpc job file (TOML) with `key=value` overrides, as `mgca train --set` does.

Uses tomllib (Python >= 3.11) or tomli where present, else a small parser of
the subset the job files use (tables, strings, numbers, booleans, flat arrays).
"""
import ast
import re


def _parse_value(text):
    text = text.strip()
    if text in ("true", "false"):
        return text == "true"
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [_parse_value(x) for x in re.findall(r'"[^"]*"|[^,]+', inner) if x.strip()] if inner else []
    if text.startswith('"'):
        return ast.literal_eval(text)
    try:
        return int(text)
    except ValueError:
        return float(text)


def _strip_comment(line):
    out, quoted = [], False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        if ch == "#" and not quoted:
            break
        out.append(ch)
    return "".join(out).strip()


def _parse_subset(text):
    root, table = {}, None
    for raw in text.splitlines():
        line = _strip_comment(raw)
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            table = root.setdefault(line[1:-1].strip(), {})
            continue
        key, _, value = line.partition("=")
        (table if table is not None else root)[key.strip()] = _parse_value(value)
    return root


def parse(text):
    try:
        import tomllib
        return tomllib.loads(text)
    except ImportError:
        pass
    try:
        import tomli
        return tomli.loads(text)
    except ImportError:
        return _parse_subset(text)


def load_job(path, overrides=()):
    with open(path, encoding="utf-8") as f:
        job = parse(f.read())
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not key=value")
        *tables, leaf = key.strip().split(".")
        node = job
        for t in tables:
            node = node.setdefault(t, {})
        node[leaf] = _parse_value(value)
    return job
