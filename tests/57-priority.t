#!/usr/bin/env bash
# Which mail goes first over an expensive link: urgent before normal
# before bulk, then small before large, then oldest.  With a bundle
# limit that takes one message at a time (every message is over half
# of it), the order of exports is the
# order of priority.
. "$(dirname "$0")/lib/testlib.sh"
mgate_setup
"$MGATE" keygen "$T/site.key" >/dev/null
"$MGATE" keygen "$T/gw.key" >/dev/null
cat >> "$T/mgate.conf" <<CONF
local_name = ship
private_key = $T/site.key
pickup_after_queue = no
[peer gw]
transport = file
public_key = $T/gw.key.pub
max_bundle_size = 4k
CONF
"$MGATE" init >/dev/null

body() { head -c "$1" /dev/zero | tr '\0' 'x' | fold -w 70; echo; }
send() { # name size extra-header
	{ printf 'Subject: %s\n%s\n' "$1" "$3"; body "$2"; } |
	    "$MGATE" -v queue -i bob@example.net 2>&1 |
	    sed -n 's/.*queued as \([0-9A-Z]*\).*/\1/p'
}
old_big=$(send old-big 3000 "X-Filler: 1")
bulk=$(send bulk 2300 "Precedence: bulk")
normal_small=$(send normal-small 2300 "X-Filler: 1")
urgent_big=$(send urgent-big 3000 "X-Priority: 1 (Highest)")
important=$(send important 2300 "Importance: high")
nonurgent=$(send nonurgent 2200 "Priority: non-urgent")

order=()
for i in 1 2 3 4 5 6; do
	run "$MGATE" export --peer gw "$T/b$i.mgb"
	id=$("$MGATE" list --json | python3 -c '
import json,sys
for m in json.load(sys.stdin):
    if any(r["state"]=="bundled" and r.get("bundle")==sys.argv[1] for r in m["recipients"]):
        print(m["id"])' "$(echo "$RUN_STDOUT" | sed -n 's/^bundle \([0-9a-f]*\) .*/\1/p')")
	order+=("$id")
done
expect=("$important" "$urgent_big" "$normal_small" "$old_big" "$nonurgent" "$bulk")
is "${order[*]}" "${expect[*]}" \
    "urgent first (small before large), then normal (small first), then low"
run "$MGATE" export --peer gw "$T/b7.mgb"
like "$RUN_STDOUT" "nothing queued" "nothing left after six one-message bundles"
done_testing
