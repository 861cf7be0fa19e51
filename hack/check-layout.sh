#!/usr/bin/env bash
# Checks the layout that docs/ARCHITECTURE.md describes, from `go list`: components never import each other
# (they declare the interfaces they consume and internal/agent wires them), pkg/config depends on no package of
# the project, and cmd/nodeagent is flags → config → agent, under 200 lines. lint.sh runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

module=$(go list -m)
components="pkg/dns pkg/eviction pkg/imagegc pkg/logs pkg/node pkg/podmanager pkg/podnet pkg/proxy pkg/server pkg/stats"
failed=0
fail() { echo "layout: $*" >&2; failed=1; }

# project_imports PKG [-deps]: the project's packages that PKG imports (directly, or with -deps transitively).
project_imports() {
	local field=Imports
	[[ ${2:-} == -deps ]] && field=Deps
	go list -f "{{join .$field \"\n\"}}" "./$1" | sed -n "s|^$module/||p" | grep -v "^$1\$" || true
}

for c in $components; do
	for imp in $(project_imports "$c"); do
		for other in $components; do
			[[ $imp == "$other" ]] && fail "$c imports the component $other: declare an interface in $c instead"
		done
	done
done

deps=$(project_imports pkg/config -deps)
[[ -z $deps ]] || fail "pkg/config depends on $(echo "$deps" | tr '\n' ' ')"

for imp in $(project_imports cmd/nodeagent); do
	[[ $imp == internal/agent || $imp == pkg/config || $imp == pkg/join ]] || fail "cmd/nodeagent imports $imp: the assembly belongs in internal/agent"
done
mapfile -t cmd_files < <(go list -f '{{range .GoFiles}}{{$.Dir}}/{{.}}{{"\n"}}{{end}}' ./cmd/nodeagent)
lines=$(cat "${cmd_files[@]}" | wc -l)
((lines < 200)) || fail "cmd/nodeagent has $lines lines (limit 199)"

((failed == 0)) || exit 1
echo "layout: no component imports another; pkg/config depends on nothing of the project; cmd/nodeagent has $lines lines"
