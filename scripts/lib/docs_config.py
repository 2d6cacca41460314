#!/usr/bin/env python3
"""Holds docs/configuration.md to the code: its one table of variables must have a row for every
environment variable the functions and the local runner read, and for every variable
template.yaml sets, and every row must name a variable that exists. A row's template column
must name each template parameter the variable's value refers to, and only parameters that
exist.

What counts as read: a string literal such as "MODEL_NAME" (upper case, with an underscore) in
the Rust sources that build a binary (not tests, not the test kit, not `#[cfg(test)] mod`s), a
one-word name given to `env::var("PORT")`, and names made at run time from a format string
("{prefix}_CLIENT_ID", "OIDC_{}"): a row such as `GITHUB_CLIENT_ID` or `OIDC_<NAME>_ISSUER`
covers those, its placeholder (`<NAME>`) standing for what the code fills in. Literals that look
like variables but are not read from the environment go in NOT_VARIABLES, with the reason.

Usage: docs_config.py [REPO]   (exit 1 with one line per problem)
"""

import re
import subprocess
import sys
from pathlib import Path

# Upper-case literals with an underscore that are not environment variables read at run time,
# each with the reason (none today; env!("...") is compile time and never counted).
NOT_VARIABLES = {}

DOC = Path("docs/configuration.md")
HEADER = ["variable", "default", "read by", "template parameter", "meaning"]

NAME = r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+"
LITERAL = re.compile(r'"(' + NAME + r')"')
ONE_WORD_READ = re.compile(r'env::var(?:_os)?\(\s*"([A-Z][A-Z0-9_]*)"\s*\)')
WORD = re.compile(r'"([A-Z][A-Z0-9_]{2,})"')
FORMAT = re.compile(r'"([A-Z0-9_]*\{[A-Za-z0-9_]*\}[A-Z0-9_{}]*)"')
COMPILE_TIME = re.compile(r'(?:option_)?env!\(\s*"[^"]*"\s*\)')
PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*>")


def tracked(repo, pattern):
    """Committed files and new ones not yet committed (not what .gitignore leaves out)."""
    command = ["git", "-C", str(repo), "ls-files", "--cached", "--others", "--exclude-standard", "--", pattern]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return [repo / line for line in out.splitlines() if line and (repo / line).is_file()]


def without_test_modules(text):
    """The source without its `#[cfg(test)] mod name { ... }` blocks."""
    while True:
        m = re.search(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{", text)
        if not m:
            return text
        depth, i = 1, m.end()
        # Braces inside string literals are balanced in practice (format strings, JSON).
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        text = text[: m.start()] + text[i:]


def binary_sources(repo):
    for path in tracked(repo, "*.rs"):
        rel = path.relative_to(repo).as_posix()
        parts = rel.split("/")
        if "tests" in parts or "benches" in parts or "test_util" in parts or path.name == "test_util.rs":
            continue
        # bench/'s programs are not deployed: bench-fanout sets Lambda's variables for the
        # bootstraps it starts, which no function of ours reads.
        if parts[0] == "bench":
            continue
        yield rel, without_test_modules(path.read_text(encoding="utf-8"))


def read_by_code(repo):
    """(literal names, one-word literals, run-time patterns) of the binaries' sources."""
    names, words, patterns = {}, set(), {}
    for rel, text in binary_sources(repo):
        text = COMPILE_TIME.sub("", text)
        for m in LITERAL.finditer(text):
            if m.group(1) not in NOT_VARIABLES:
                names.setdefault(m.group(1), rel)
        for m in ONE_WORD_READ.finditer(text):
            names.setdefault(m.group(1), rel)
        words.update(m.group(1) for m in WORD.finditer(text))
        for m in FORMAT.finditer(text):
            pattern = re.sub(r"\{[A-Za-z0-9_]*\}", "*", m.group(1))
            if pattern.count("*") == 1 and "_" in pattern and re.search("[A-Z]", pattern):
                patterns.setdefault(pattern, rel)
    return names, words, patterns


def template_variables(repo):
    """{variable: set of template parameters its value refers to} over every Environment."""
    lines = (repo / "template.yaml").read_text(encoding="utf-8").splitlines()
    parameters, section = set(), None
    for line in lines:
        top = re.match(r"^(\w+):", line)
        if top:
            section = top.group(1)
        elif section == "Parameters":
            m = re.match(r"^  (\w+):\s*$", line)
            if m:
                parameters.add(m.group(1))
    variables = {}
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)Variables:\s*$", lines[i])
        if not (m and i > 0 and lines[i - 1].strip() == "Environment:"):
            i += 1
            continue
        indent, i, current = len(m.group(1)), i + 1, None
        while i < len(lines):
            line = lines[i]
            if line.strip() and not line.lstrip().startswith("#"):
                lead = len(line) - len(line.lstrip())
                if lead <= indent:
                    break
                key = re.match(r"^\s*([A-Z][A-Z0-9_]*):(.*)$", line)
                if key and (current is None or lead == current[1]):
                    current = (key.group(1), lead)
                    variables.setdefault(current[0], set())
                    line = key.group(2)
                refs = set(re.findall(r"\b\w+\b", line)) & parameters
                variables[current[0]].update(refs)
            i += 1
    return variables, parameters


def doc_rows(repo):
    """{variable: (line number, template column)} of the one table, and problems found."""
    problems, rows, tables = [], {}, 0
    lines = (repo / DOC).read_text(encoding="utf-8").splitlines()
    in_table = False
    for number, line in enumerate(lines, 1):
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else None
        if cells is None:
            in_table = False
            continue
        if not in_table:
            in_table = True
            if cells[0] == "variable":
                tables += 1
                if cells != HEADER:
                    problems.append(f"{DOC}:{number}: the table's columns must be {' | '.join(HEADER)}")
            continue
        if set(line) <= set("|-: "):
            continue
        names = re.findall(r"`([^`]+)`", cells[0])
        if len(names) != 1 or not re.fullmatch(r"[A-Z][A-Z0-9_<>]*", names[0]):
            problems.append(f"{DOC}:{number}: a row's first cell is one `VARIABLE`, not {cells[0]!r}")
            continue
        if names[0] in rows:
            problems.append(f"{DOC}:{number}: {names[0]} has a row already (line {rows[names[0]][0]})")
        if len(cells) != len(HEADER):
            problems.append(f"{DOC}:{number}: {names[0]}'s row has {len(cells)} cells, not {len(HEADER)}")
            continue
        rows[names[0]] = (number, cells[3])
    if tables != 1:
        problems.append(f"{DOC}: has {tables} tables of variables; it must have exactly one")
    return rows, problems


def pattern_regex(pattern):
    pre, suf = pattern.split("*")
    return re.compile(re.escape(pre) + r"(.+)" + re.escape(suf) + r"$")


def made_at_run_time(name, words, literals, patterns):
    """True if the code can make `name`: a pattern whose `*` is a placeholder, a one-word
    literal of the code ("GITHUB"), or a name the code can make in turn ("OIDC_<NAME>")."""
    for pattern in patterns:
        m = pattern_regex(pattern).match(name)
        if not m:
            continue
        middle = m.group(1)
        if (PLACEHOLDER.fullmatch(middle) or middle in words or middle in literals
                or made_at_run_time(middle, words, literals, patterns)):
            return True
    return False


def row_regex(row):
    """A row's name as a pattern: `OIDC_<NAME>_ISSUER` stands for `OIDC_SSO_ISSUER` too (a
    placeholder is one word, so `OIDC_<NAME>_ID` does not stand for `OIDC_SSO_CLIENT_ID`)."""
    return re.compile("".join("[A-Z0-9]+" if PLACEHOLDER.fullmatch(part) else re.escape(part)
                              for part in re.split(r"(<[A-Z][A-Z0-9_]*>)", row)) + "$")


def covered(name, rows):
    return name in rows or any(row_regex(row).match(name) for row in rows)


def main():
    repo = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    literals, words, patterns = read_by_code(repo)
    template, parameters = template_variables(repo)
    rows, problems = doc_rows(repo)

    for name, where in sorted(literals.items()):
        if name not in rows:
            problems.append(f"{DOC}: no row for {name} (read in {where})")
    for name in sorted(template):
        if not covered(name, rows):
            problems.append(f"{DOC}: no row for {name} (set in template.yaml)")
    for pattern, where in sorted(patterns.items()):
        if not any(pattern_regex(pattern).match(row) for row in rows):
            problems.append(f"{DOC}: no row for the variables {pattern} made in {where}")
    for name, (number, column) in sorted(rows.items()):
        in_template = any(row_regex(name).match(var) for var in template)
        if name not in literals and not in_template and not made_at_run_time(name, words, literals, patterns):
            problems.append(f"{DOC}:{number}: {name} is neither read by the code nor set in template.yaml")
        sets = set().union(*(refs for var, refs in template.items() if row_regex(name).match(var)))
        for parameter in sorted(sets):
            if not re.search(r"\b" + parameter + r"\b", column):
                problems.append(f"{DOC}:{number}: {name}'s template column does not name {parameter}, which sets it")
        for named in re.findall(r"`([A-Z][A-Za-z0-9]+)`", column):
            if named not in parameters and not named.isupper():
                problems.append(f"{DOC}:{number}: {name}'s template column names `{named}`, not a parameter of template.yaml")

    for problem in problems:
        print(problem)
    checked = f"{len(rows)} rows; {len(literals)} variables read, {len(patterns)} made at run time, {len(template)} set in template.yaml"
    if problems:
        print(f"docs/configuration.md: {len(problems)} problem(s) ({checked})")
        return 1
    print(f"docs/configuration.md: complete ({checked})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
