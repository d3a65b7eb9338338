#!/usr/bin/env bash
# lint.sh - the layout and shape checks of STYLE.md: every C file is as
# clang-format (.clang-format) writes it, and no function nests deeper than
# three levels (tools/lint/nesting.py). Run by tools/check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files -- '*.c' '*.h' | grep -E '^(common|server|client|worker|tools)/')
status=0
if ! clang-format --dry-run -Werror "${files[@]}" 2>/tmp/ps-lint.$$; then
    echo "FAIL: clang-format would change these files (run clang-format -i on them):" >&2
    grep -o '^[^:]*:' /tmp/ps-lint.$$ | sort -u >&2
    status=1
fi
rm -f /tmp/ps-lint.$$
/usr/bin/python3 tools/lint/nesting.py $(printf '%s\n' "${files[@]}" | grep '\.c$') || status=1
[ $status -eq 0 ] && echo "lint: ${#files[@]} files formatted, nesting at most 3 levels"
exit $status
