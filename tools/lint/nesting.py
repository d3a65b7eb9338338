#!/usr/bin/python3
"""nesting.py FILE... - names every function whose control blocks nest
deeper than 3 levels (STYLE.md section 11: "don't nest more than three
levels deep") and exits 1 if there is one. Reads clang-formatted C: a
function body starts with '{' in column 0 and ends with '}' in column 0.
A level is an if/for/while/do/switch/else body, braced or not; a switch's
case labels are not a level of their own; initializer braces are not
levels."""
import re
import sys

MAX = 3
CONTROL = re.compile(r"^(\}\s*)?(if|for|while|switch|do|else)\b")


def functions(path):
    """(name, first line number, body lines) of every function in path."""
    lines = open(path, encoding="utf-8", errors="replace").read().split("\n")
    head = []
    i = 0
    while i < len(lines):
        if lines[i].startswith("{") and head:
            names = re.findall(r"([A-Za-z_]\w*)\s*\(", " ".join(head[-3:]))
            start, body = i + 1, []
            i += 1
            while i < len(lines) and not lines[i].startswith("}"):
                body.append(lines[i])
                i += 1
            yield (names[0] if names else "?"), start, body
            head = []
        elif lines[i].strip():
            head.append(lines[i])
        i += 1


def deepest(body):
    """The deepest control level in a function body, and its line offset."""
    stack = []  # True: a control block, False: any other brace
    worst, where, pending = 0, 0, 0
    for k, raw in enumerate(body):
        s = raw.strip()
        if not s or s.startswith(("//", "/*", "*", "#")):
            continue
        closes = len(s) - len(s.lstrip("}"))
        for _ in range(closes):
            if stack:
                stack.pop()
        depth = sum(stack) + pending
        if depth > worst:
            worst, where = depth, k
        control = bool(CONTROL.match(s)) and not s.startswith("case")
        if s.endswith("{"):
            stack.append(control)
            pending = 0
        elif control and not s.endswith(";"):
            pending += 1  # a brace-less body follows
        elif s.endswith(";"):
            pending = 0
    return worst, where


def main():
    failed = False
    for path in sys.argv[1:]:
        for name, start, body in functions(path):
            depth, k = deepest(body)
            if depth > MAX:
                print(f"{path}:{start + k + 1}: {name}() nests {depth} levels deep (at most {MAX})")
                failed = True
    sys.exit(1 if failed else 0)


main()
