#!/usr/bin/env bash
# 20-mua.t - real mail programs with mgate as their sendmail: bsd-mailx
# (sendmail -i -t, Bcc in the message), mutt in batch mode (-oem -oi -f ...
# -- rcpts) and git send-email (-i rcpts).  For each: the recipients in
# `mgate list --json' are exactly right (the Bcc recipient included), no Bcc:
# in `mgate cat', Date/Message-ID/From exactly once, the body byte-identical.
# Each program runs twice: straight into mgate, and through a recorder that
# keeps its argv and stdin before handing both to mgate, so that the stored
# message can be compared with exactly what the program sent.
. "$(dirname "$0")/lib/testlib.sh"
need_mgate
need_cmd jq cmp bsd-mailx mutt git
[ -e "$(git --exec-path)/git-send-email" ] || _tap_missing "needs git send-email (package git-email)"
mgate_setup

mkdir -p "$T/bin" "$T/home" "$T/Mail"
ln -s "$MGATE" "$T/bin/sendmail"
# The recorder: keeps the arguments and the message, then runs mgate as
# sendmail with both, exiting with mgate's status.
cat >"$T/bin/rec-sendmail" <<EOF
#!/bin/sh
printf '%s\n' "\$@" >"$T/rec.argv"
cat >"$T/rec.in"
exec "$T/bin/sendmail" "\$@" <"$T/rec.in"
EOF
chmod +x "$T/bin/rec-sendmail"

# No user or system configuration of the mail programs may leak in.
export HOME=$T/home GIT_CONFIG_NOSYSTEM=1 LC_ALL=C.UTF-8 TZ=UTC
unset MAILRC GIT_AUTHOR_NAME GIT_AUTHOR_EMAIL GIT_COMMITTER_NAME GIT_COMMITTER_EMAIL EMAIL REPLYTO

ok "mgate init" "$MGATE" init
MYLOGIN=$(id -un)

# The body every program sends: 8-bit text, a lone dot, dot lines, a line
# starting with "From ", trailing white space, an empty line.
printf 'Gr\303\274\303\237e aus K\303\266ln.\n.\n..\n.x\nFrom here on\n\ttab and trailing space  \n\nlast line\n' \
	>"$T/body"

# ---------------------------------------------------------------------------
# Helpers.

ids() { "$MGATE" list --json 2>/dev/null | jq -r '.[].id' | LC_ALL=C sort; }
# new_id: the one ID that appeared since the last call (or fails).
ids >"$T/ids.seen"
NEW=
new_id() {
	local n
	ids >"$T/ids.now"
	NEW=$(LC_ALL=C comm -13 "$T/ids.seen" "$T/ids.now")
	cp "$T/ids.now" "$T/ids.seen"
	n=$(printf '%s' "$NEW" | grep -c . || true)
	is "$n" 1 "$1: exactly one new message in the queue"
}
sorted_rcpts() {
	"$MGATE" list --json 2>/dev/null |
		jq -r --arg id "$1" '.[] | select(.id == $id) | .recipients[].address' | LC_ALL=C sort
}
field() { "$MGATE" list --json 2>/dev/null | jq -r --arg id "$1" --arg k "$2" '.[] | select(.id == $id) | .[$k] // "(none)"'; }
stored_header() { "$MGATE" cat "$1" 2>/dev/null | LC_ALL=C sed -e 's/\r$//' -e '/^$/q'; }
count_field() { stored_header "$1" | grep -c -i "^$2:" || true; }
field_line() { stored_header "$1" | grep -i "^$2:" || true; }
# The body: everything after the first empty line.
body_of() { "$MGATE" cat "$1" 2>/dev/null | LC_ALL=C sed '1,/^\r\{0,1\}$/d'; }

# common_checks NAME ID EXPECTED-RCPTS(one per line, sorted) BODY-FILE
common_checks() {
	local name=$1 id=$2 want=$3 body=$4 f
	is "$(sorted_rcpts "$id")" "$want" "$name: recipients exactly (Bcc recipient included)"
	is "$("$MGATE" list --json 2>/dev/null | jq -r --arg id "$id" \
		'[.[] | select(.id == $id) | .recipients[].state] | unique | join(" ")')" \
		queued "$name: every recipient queued"
	is "$(count_field "$id" bcc)" 0 "$name: no Bcc: in the stored message"
	for f in Date Message-ID From; do
		is "$(count_field "$id" "$f")" 1 "$name: $f: exactly once"
	done
	is "$(count_field "$id" received)" 1 "$name: one Received: (mgate's)"
	body_of "$id" >"$T/body.got"
	if cmp -s "$T/body.got" "$body"; then
		pass "$name: body byte-identical"
	else
		fail "$name: body byte-identical"
		diag "$(cmp "$T/body.got" "$body" 2>&1)"
		diag "$(diff <(cat -A "$body") <(cat -A "$T/body.got") | head -n 20)"
	fi
}

# recorded_checks NAME ID: the stored message is mgate's added lines on top
# of exactly what the program sent, less its Bcc fields; ADDED names the
# added fields in order ("Received: <tab>id Date: Message-ID: From:" style).
recorded_checks() {
	local name=$1 id=$2 added=$3 size total
	# What the program sent, without Bcc fields (and their continuations).
	LC_ALL=C awk 'h && /^\r?$/ { h = 0 }
		h && /^[Bb][Cc][Cc]:/ { skip = 1; next }
		h && skip && /^[ \t]/ { next }
		{ skip = 0; print }' h=1 "$T/rec.in" >"$T/rec.nobcc"
	# awk adds a final newline the input may lack: the recorded messages
	# here all end in one.
	"$MGATE" cat "$id" >"$T/rec.stored" 2>/dev/null
	size=$(wc -c <"$T/rec.nobcc")
	total=$(wc -c <"$T/rec.stored")
	if [ "$total" -gt "$size" ] && tail -c "$size" "$T/rec.stored" | cmp -s - "$T/rec.nobcc"; then
		pass "$name: stored message ends with exactly what was sent (less Bcc)"
	else
		fail "$name: stored message ends with exactly what was sent (less Bcc)"
		diag "$(diff <(cat -A "$T/rec.nobcc") <(cat -A "$T/rec.stored") | head -n 30)"
	fi
	is "$(head -c "$((total - size))" "$T/rec.stored" | LC_ALL=C sed -n 's/^\([^ \t:]*:\{0,1\}\).*/\1/p' |
		sed 's/^$/<tab>/' | tr '\n' ' ' | sed 's/ $//')" "$added" \
		"$name: only these lines are added on top: $added"
}

# ---------------------------------------------------------------------------
note "bsd-mailx"

printf 'set sendmail=%s\n' "$T/bin/sendmail" >"$T/mailrc"
run env MAILRC="$T/mailrc" bsd-mailx -n -s 'mailx subject' \
	-c 'cc1@example.com, Cc Two <cc2@example.com>' -b bcc@example.com \
	to1@example.com 'To Two <to2@example.com>' <"$T/body"
is "$RUN_STATUS" 0 "mailx exits 0"
new_id "mailx"
common_checks "mailx" "$NEW" "bcc@example.com
cc1@example.com
cc2@example.com
to1@example.com
to2@example.com" "$T/body"
is "$(field "$NEW" sender)" "$MYLOGIN@example.org" "mailx: envelope sender is login@mydomain"
is "$(field_line "$NEW" from)" "From: $MYLOGIN@example.org" "mailx: From: added as login@mydomain"
like "$(field_line "$NEW" message-id)" "^Message-ID: <[0-9]{14}\.$NEW@example\.org>$" \
	"mailx: Message-ID: added by mgate (mailx sends none)"
like "$(field_line "$NEW" subject)" "^Subject: mailx subject$" "mailx: Subject kept"

printf 'set sendmail=%s\n' "$T/bin/rec-sendmail" >"$T/mailrc.rec"
run env MAILRC="$T/mailrc.rec" bsd-mailx -n -r 'Mail X <mailx@example.org>' -s 'mailx recorded' \
	-c cc@example.com -b 'Hidden <bcc@example.com>' to@example.com <"$T/body"
is "$RUN_STATUS" 0 "mailx -r (recorded) exits 0"
new_id "mailx -r"
is "$(head -n 2 "$T/rec.argv" | tr '\n' ' ')" "-i -t " "mailx calls sendmail -i -t"
is "$(grep -c -i '^bcc:' "$T/rec.in")" 1 "mailx puts Bcc: in the message it hands over"
common_checks "mailx -r" "$NEW" "bcc@example.com
cc@example.com
to@example.com" "$T/body"
is "$(field "$NEW" sender)" "mailx@example.org" "mailx -r: envelope sender from -f"
recorded_checks "mailx -r" "$NEW" "Received: <tab> Date: Message-ID:"

# ---------------------------------------------------------------------------
note "mutt (batch mode)"

write_muttrc() { # FILE SENDMAIL
	cat >"$1" <<EOF
set sendmail="$2 -oem -oi"
set use_from=yes
set from="Mutt User <mutt@example.org>"
set envelope_from=yes
set hostname="example.org"
set charset="utf-8"
set send_charset="us-ascii:utf-8"
set record=""
set copy=no
set folder="$T/Mail"
set spoolfile="$T/Mail/inbox"
set mbox_type=mbox
set write_bcc=yes
set dsn_notify="failure,delay"
set dsn_return=hdrs
set use_8bitmime=yes
EOF
}
write_muttrc "$T/muttrc" "$T/bin/sendmail"
run mutt -n -F "$T/muttrc" -s 'mutt subject' -c cc@example.com -c 'Cc Two <cc2@example.com>' \
	-b bcc@example.com to@example.com <"$T/body"
is "$RUN_STATUS" 0 "mutt exits 0"
new_id "mutt"
common_checks "mutt" "$NEW" "bcc@example.com
cc2@example.com
cc@example.com
to@example.com" "$T/body"
is "$(field "$NEW" sender)" "mutt@example.org" "mutt: envelope sender from -f"
is "$(field_line "$NEW" from)" "From: Mutt User <mutt@example.org>" "mutt: mutt's From: kept, none added"
unlike "$(field_line "$NEW" message-id)" "$NEW" "mutt: mutt's Message-ID: kept, none added"

write_muttrc "$T/muttrc.rec" "$T/bin/rec-sendmail"
run mutt -n -F "$T/muttrc.rec" -s 'mutt recorded' -c cc@example.com -b bcc@example.com \
	to@example.com <"$T/body"
is "$RUN_STATUS" 0 "mutt (recorded) exits 0"
new_id "mutt recorded"
argv=$(tr '\n' ' ' <"$T/rec.argv")
like "$argv" "^-oem -oi .*-f mutt@example.org .*-- to@example.com cc@example.com bcc@example.com $" \
	"mutt calls sendmail -oem -oi ... -f ADDR ... -- rcpts"
like "$argv" "-N failure,delay -R hdrs" "mutt passes -N and -R"
like "$argv" "-B8BITMIME" "mutt passes -B8BITMIME for an 8-bit body"
common_checks "mutt recorded" "$NEW" "bcc@example.com
cc@example.com
to@example.com" "$T/body"
recorded_checks "mutt recorded" "$NEW" "Received: <tab>"

# ---------------------------------------------------------------------------
note "git send-email"

git init -q "$T/repo"
git -C "$T/repo" config user.name "Git User"
git -C "$T/repo" config user.email "git@example.org"
git -C "$T/repo" config sendemail.confirm never
printf 'hello\n' >"$T/repo/file"
git -C "$T/repo" add file
git -C "$T/repo" commit -q -m "first"
printf 'hello\nworld\n.\n..\nFrom here on\n' >"$T/repo/file"
git -C "$T/repo" commit -q -a -m "second change" -m "A body line in the commit message."
git -C "$T/repo" format-patch -q -1 -o "$T/patches"
patch=$(ls "$T/patches"/0001-*.patch)
# The patch's body: after its first empty line.
LC_ALL=C sed '1,/^$/d' "$patch" >"$T/patch.body"

run git -C "$T/repo" send-email --sendmail-cmd="$T/bin/sendmail" --to to@example.com \
	--cc 'Cc Person <cc@example.com>' --bcc bcc@example.com --confirm=never --suppress-cc=all \
	--no-validate --quiet "$patch"
is "$RUN_STATUS" 0 "git send-email --sendmail-cmd exits 0"
new_id "git send-email"
common_checks "git send-email" "$NEW" "bcc@example.com
cc@example.com
to@example.com" "$T/patch.body"
is "$(field "$NEW" sender)" "$MYLOGIN@example.org" "git send-email: envelope sender login@mydomain (no -f)"
is "$(field_line "$NEW" from)" "From: Git User <git@example.org>" "git send-email: its From: kept"
like "$(field_line "$NEW" message-id)" "^Message-Id: <.*@example\.org>$" "git send-email: its Message-Id: kept"

run git -C "$T/repo" send-email --smtp-server="$T/bin/rec-sendmail" --to to@example.com \
	--cc cc@example.com --bcc bcc@example.com --bcc 'Second <bcc2@example.com>' --confirm=never \
	--suppress-cc=all --no-validate --quiet "$patch"
is "$RUN_STATUS" 0 "git send-email --smtp-server=PATH (recorded) exits 0"
new_id "git send-email recorded"
is "$(tr '\n' ' ' <"$T/rec.argv")" "-i to@example.com cc@example.com bcc@example.com bcc2@example.com " \
	"git send-email calls sendmail -i rcpts (no --)"
common_checks "git send-email recorded" "$NEW" "bcc2@example.com
bcc@example.com
cc@example.com
to@example.com" "$T/patch.body"
recorded_checks "git send-email recorded" "$NEW" "Received: <tab>"

# ---------------------------------------------------------------------------
note "the queue as a whole"

is "$("$MGATE" list --json 2>/dev/null | jq length)" 6 "six messages queued, no more"
is "$(find "$T/spool/maildrop" "$T/spool/tmp" -type f | wc -l)" 0 "nothing left in maildrop/ or tmp/"

done_testing
