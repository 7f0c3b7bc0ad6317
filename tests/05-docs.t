#!/usr/bin/env bash
# Every configuration key and every command is documented: the key
# table and the command table are the truth, the man pages must follow.
. "$(dirname "$0")/lib/testlib.sh"
repo=$(cd "$(dirname "$0")/.." && pwd)
MGATE=${MGATE:-${MGATE_BUILD:-$repo/build}/mgate}
need_mgate

keys=$("$MGATE" check-config --keys | sed -n 's/^\([a-z_][a-z_]*\) .*/\1/p')
[ -n "$keys" ] || fail "check-config --keys lists keys"
for k in $keys; do
	if grep -q "^\.BR $k " "$repo/man/mgate.conf.5"; then
		pass "mgate.conf(5) documents $k"
	else
		fail "mgate.conf(5) documents $k"
	fi
done

cmds=$("$MGATE" --help | sed -n 's/^  \([a-z-][a-z-]*\)  .*/\1/p')
[ -n "$cmds" ] || fail "mgate --help lists commands"
for c in $cmds; do
	if grep -q "^\.B[IR]* $c\( \|$\)" "$repo/man/mgate.8"; then
		pass "mgate(8) documents the $c command"
	else
		fail "mgate(8) documents the $c command"
	fi
done

for m in "$repo"/man/*.[58]; do
	out=$(LC_ALL=C MANWIDTH=80 man --warnings -l "$m" 2>&1 >/dev/null)
	is "$out" "" "$(basename "$m") formats without warnings"
done
done_testing
