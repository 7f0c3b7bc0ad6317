#!/usr/bin/env bash
# 10-queue.t - the sendmail interface of `mgate queue', with exact assertions:
# recipients (arguments and -t), Bcc removal, the added headers, -f/-F/-N/-R/-V,
# dot termination with LF and CRLF, ignored -o options, -bp, the sendmail and
# mailq names, every refusal's exit code and message (and that a refused
# submission leaves nothing behind), hold/release/delete, cat, check-config.
. "$(dirname "$0")/lib/testlib.sh"
need_mgate
need_cmd jq cmp date
mgate_setup

# Pickup only when this script asks for it (list runs pickup), so that the
# maildrop/ checks after a refused submission are not racing a background
# pickup.  One test below turns it back on.
echo 'pickup_after_queue = no' >>"$MGATE_CONFIG"
mkdir -p "$T/bin" "$T/in"
ln -s "$MGATE" "$T/bin/sendmail"
ln -s "$MGATE" "$T/bin/mailq"
MYUID=$(id -u)
MYLOGIN=$(id -un)
CR=$'\r'
NL=$'\n'

# ---------------------------------------------------------------------------
# Helpers.

# submit INPUT CMD [ARGS...]: run CMD <INPUT; sets SUB_RC, SUB_ERR and QID
# (the ID from "queued as ID", when CMD was given -v).
submit() {
	local in=$1
	shift
	SUB_RC=0
	"$@" <"$in" >"$T/sub.out" 2>"$T/sub.err" || SUB_RC=$?
	SUB_ERR=$(cat "$T/sub.err")
	QID=$(sed -n 's/^[a-z]*: queued as \([0-9A-Z]\{16\}\)$/\1/p' "$T/sub.err")
}

# q INPUT [ARGS...]: mgate -v queue ARGS <INPUT, must succeed with an ID.
q() {
	local in=$1
	shift
	submit "$in" "$MGATE" -v queue "$@"
	if [ "$SUB_RC" != 0 ] || [ -z "$QID" ]; then
		diag "queue $* <$in: exit $SUB_RC: $SUB_ERR"
		return 1
	fi
}

nmsg() { "$MGATE" list --json 2>/dev/null | jq length; }
addrs() { "$MGATE" list --json 2>/dev/null | jq -r --arg id "$1" '.[] | select(.id == $id) | .recipients[].address'; }
states() { "$MGATE" list --json 2>/dev/null | jq -r --arg id "$1" '[.[] | select(.id == $id) | .recipients[].state] | join(" ")'; }
field() { "$MGATE" list --json 2>/dev/null | jq -r --arg id "$1" --arg k "$2" '.[] | select(.id == $id) | .[$k] // "(none)"'; }

# Header section of a stored message (up to the first empty line).
stored_header() { "$MGATE" pickup 2>/dev/null; "$MGATE" cat "$1" | LC_ALL=C sed -e 's/\r$//' -e '/^$/q'; }
# count QID FIELD: how many FIELD: lines the stored header has.
count_field() { stored_header "$1" | grep -c -i "^$2:" || true; }

# check_stored NAME QID EXPECTED-REST EOL [date] [msgid] [from=LINE]...
# The stored message must be exactly: the two Received lines, then the named
# added fields in this order (Date, Message-ID, From), then EXPECTED-REST
# (a file) byte for byte.  EOL is "" or $'\r'.  The date is read from the
# stored Received line and must be an RFC 5322 date.
DATE_RE='^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4}$'
check_stored() {
	local name=$1 qid=$2 rest=$3 eol=$4 got exp d stamp a
	shift 4
	got=$T/got.$qid
	exp=$T/exp.$qid
	# cat reads the queue database: import the maildrop first.
	"$MGATE" pickup 2>/dev/null
	if ! "$MGATE" cat "$qid" >"$got" 2>"$T/cat.err"; then
		fail "$name"
		diag "  mgate cat $qid failed: $(cat "$T/cat.err")"
		return 1
	fi
	d=$(LC_ALL=C sed -n -e '2{s/\r$//' -e 's/^\tid [0-9A-Z]\{16\}; //p' -e '}' "$got")
	if ! [[ $d =~ $DATE_RE ]]; then
		fail "$name"
		diag "  no RFC 5322 date in the second Received line: '$d'"
		diag "$(head -c 600 "$got")"
		return 1
	fi
	stamp=$(date -d "$d" +%Y%m%d%H%M%S)
	{
		printf 'Received: by site.example.org (mgate, from userid %s)%s\n' "$MYUID" "$eol"
		printf '\tid %s; %s%s\n' "$qid" "$d" "$eol"
		for a in "$@"; do
			case $a in
			date) printf 'Date: %s%s\n' "$d" "$eol" ;;
			msgid) printf 'Message-ID: <%s.%s@example.org>%s\n' "$stamp" "$qid" "$eol" ;;
			from=*) printf '%s%s\n' "${a#from=}" "$eol" ;;
			*) BAIL_OUT "check_stored: unknown field $a" ;;
			esac
		done
		cat "$rest"
	} >"$exp"
	if cmp -s "$exp" "$got"; then
		pass "$name"
		return 0
	fi
	fail "$name"
	diag "  expected (cat -A):"
	diag "$(cat -A "$exp" | head -n 30 | sed 's/^/    /')"
	diag "  got (cat -A):"
	diag "$(cat -A "$got" | head -n 30 | sed 's/^/    /')"
	return 1
}

# spool_clean NAME: nothing left in spool/tmp or spool/maildrop.
spool_clean() {
	local left
	left=$(find "$T/spool/tmp" "$T/spool/maildrop" -mindepth 1 2>/dev/null)
	is "$left" "" "$1: nothing left in spool/tmp or spool/maildrop"
}

# refused RC NAME REGEX INPUT CMD [ARGS...]: CMD <INPUT exits RC with a
# message matching REGEX; nothing is left in the spool and the queue shows
# nothing new.
refused() {
	local want=$1 name=$2 re=$3 in=$4 before after
	shift 4
	before=$(nmsg)
	submit "$in" "$@"
	is "$SUB_RC" "$want" "$name: exit $want"
	like "$SUB_ERR" "$re" "$name: says why"
	spool_clean "$name"
	after=$(nmsg)
	is "$after" "$before" "$name: list --json shows nothing new"
}

# ---------------------------------------------------------------------------
# Messages.

cat >"$T/in/plain" <<'EOF'
Subject: plain
X-Test: one

Hello.
EOF

# ---------------------------------------------------------------------------
note "the spool must exist before a submission"

submit "$T/in/plain" "$MGATE" queue r@example.com
is "$SUB_RC" 75 "queue into a spool that does not exist yet: exit 75"
like "$SUB_ERR" "spool $T/spool is missing.*mgate init" "queue into a missing spool: says to run mgate init"
ok "queue into a missing spool: creates nothing" test ! -e "$T/spool"
ok "mgate init creates the spool" "$MGATE" init
is "$(nmsg)" 0 "the new queue is empty"

# ---------------------------------------------------------------------------
note "recipients from the arguments"

q "$T/in/plain" r1@example.com 'Name Here <r2@example.com>' '<r3@example.com>' bare r1@example.com
is "$SUB_RC" 0 "queue with recipient arguments exits 0"
like "$QID" '^[0-9A-Z]{16}$' "-v prints the queue ID"
is "$(find "$T/spool/maildrop" -type f | wc -l)" 1 "the submission is one file in maildrop/ (pickup_after_queue = no)"
is "$(addrs "$QID")" "r1@example.com
r2@example.com
r3@example.com
bare@example.org" "recipients: angle brackets and names stripped, bare local part qualified with mydomain, duplicate dropped"
is "$(find "$T/spool/maildrop" -type f | wc -l)" 0 "list ran pickup: maildrop/ is empty"
is "$(field "$QID" sender)" "$MYLOGIN@example.org" "default envelope sender is login@mydomain"
is "$(field "$QID" user)" "$MYLOGIN" "user is the submitting login"
is "$(field "$QID" envid)" "(none)" "no envid without -V"
is "$(states "$QID")" "queued queued queued queued" "every recipient is queued"
check_stored "stored message: Received, Date, Message-ID, From added on top, input unchanged" \
	"$QID" "$T/in/plain" "" date msgid "from=From: $MYLOGIN@example.org"
is "$(field "$QID" size)" "$(wc -c <"$T/got.$QID")" "list --json size is the stored size"
PLAIN_ID=$QID

# ---------------------------------------------------------------------------
note "-t: recipients from To, Cc, Bcc"

cat >"$T/in/t1" <<'EOF'
From: Sender <sender@example.com>
To: "Doe, John" <john@example.com>, plain@example.com (Plain Person),
 Friends: anne@example.com, "Bob B." <bob@example.net>;,
	undisclosed-recipients:;
Cc: "quoted local"@example.com, <angle@example.com> (comment (nested)),
  "a\"b"@example.com, "unneeded"@example.com, , john@example.com
Bcc: secret@example.com,
 Hidden Group: h1@example.org, h2@example.org;
Subject: extract
X-Bcc: not-a-recipient@example.com
Date: Tue, 01 Dec 2026 10:00:00 +0000
Message-ID: <given@example.com>
bcc: second-bcc@example.com (lower case name)

Body: with a header-like line
Bcc: this is body text, not a header
EOF
# The same without the two Bcc fields (and their continuation line).
grep -v -e '^Bcc: secret' -e '^ Hidden Group' -e '^bcc: second' "$T/in/t1" >"$T/in/t1.nobcc"

q "$T/in/t1" -t
is "$SUB_RC" 0 "-t exits 0"
is "$(addrs "$QID")" 'john@example.com
plain@example.com
anne@example.com
bob@example.net
"quoted local"@example.com
angle@example.com
"a\"b"@example.com
unneeded@example.com
secret@example.com
h1@example.org
h2@example.org
second-bcc@example.com' "-t: groups, comments, quoted local parts, folded lines, Bcc; duplicates once"
check_stored "-t: both Bcc fields removed (continuation too), nothing added but Received, rest unchanged" \
	"$QID" "$T/in/t1.nobcc" ""
is "$(count_field "$QID" bcc)" 0 "no Bcc: in the stored header"
is "$(count_field "$QID" date)" 1 "Date: present once (not added)"
is "$(count_field "$QID" message-id)" 1 "Message-ID: present once (not added)"
is "$(count_field "$QID" from)" 1 "From: present once (not added)"

# RFC 5322 obsolete syntax (4.5.3 obs-bcc, obs-optional): white space
# before the colon.  A receiver must accept it (Postfix's is_header() does);
# a Bcc field mgate does not recognise would go out to every recipient.
printf 'To: a@example.com\nBcc : obs-bcc@example.com\nSubject: obsolete bcc\n\nx\n' >"$T/in/t5"
q "$T/in/t5" -t
is "$(addrs "$QID")" "a@example.com
obs-bcc@example.com" "-t: 'Bcc :' (obsolete space before the colon) is read as Bcc"
is "$(count_field "$QID" 'bcc[ \t]*')" 0 "'Bcc :' (obsolete space before the colon) is removed"

# -t plus arguments: the union (documented: "in addition to").
printf 'To: a@example.com\nCc: b@example.com\nSubject: union\n\nx\n' >"$T/in/t2"
q "$T/in/t2" -t c@example.com a@example.com
is "$(addrs "$QID")" "c@example.com
a@example.com
b@example.com" "-t with arguments: arguments plus header recipients, each once"

# Bcc is removed even without -t.
printf 'To: a@example.com\nBcc: hidden@example.com\nSubject: bcc no -t\n\nx\n' >"$T/in/t3"
printf 'To: a@example.com\nSubject: bcc no -t\n\nx\n' >"$T/in/t3.nobcc"
q "$T/in/t3" a@example.com
is "$(addrs "$QID")" "a@example.com" "without -t only the arguments are recipients"
check_stored "without -t the Bcc field is still removed" "$QID" "$T/in/t3.nobcc" "" date msgid \
	"from=From: $MYLOGIN@example.org"

# -t on a CRLF message with a CRLF-folded To.
printf 'To: one@example.com,\r\n two@example.com\r\nBcc: three@example.com\r\nSubject: crlf -t\r\n\r\nbody\r\n' >"$T/in/t4"
printf 'To: one@example.com,\r\n two@example.com\r\nSubject: crlf -t\r\n\r\nbody\r\n' >"$T/in/t4.nobcc"
q "$T/in/t4" -t
is "$(addrs "$QID")" "one@example.com
two@example.com
three@example.com" "-t on a CRLF message with a CRLF-folded field"
check_stored "CRLF message: CRLF added headers, Bcc removed, rest unchanged" "$QID" "$T/in/t4.nobcc" "$CR" \
	date msgid "from=From: $MYLOGIN@example.org"

# ---------------------------------------------------------------------------
note "added headers"

printf 'Date: Wed, 02 Dec 2026 11:00:00 +0100\nSubject: has date\n\nx\n' >"$T/in/h1"
q "$T/in/h1" r@example.com
check_stored "message with Date: gets Message-ID and From only" "$QID" "$T/in/h1" "" msgid \
	"from=From: $MYLOGIN@example.org"
printf 'Message-Id: <mixed.case@example.com>\nSubject: has msgid\n\nx\n' >"$T/in/h2"
q "$T/in/h2" r@example.com
check_stored "message with Message-Id: (any case) gets Date and From only" "$QID" "$T/in/h2" "" date \
	"from=From: $MYLOGIN@example.org"
printf 'FROM: Someone <someone@example.com>\nSubject: has from\n\nx\n' >"$T/in/h3"
q "$T/in/h3" r@example.com
check_stored "message with FROM: (any case) gets Date and Message-ID only" "$QID" "$T/in/h3" "" date msgid
for f in date message-id from received; do
	is "$(count_field "$QID" "$f")" 1 "$f: present exactly once"
done

# No header section at all: a blank line follows the added fields.
printf 'just a body line\nand another\n' >"$T/in/h4"
{ printf '\n'; cat "$T/in/h4"; } >"$T/in/h4.exp"
q "$T/in/h4" r@example.com
check_stored "message without a header: added fields, a blank line, the body" "$QID" "$T/in/h4.exp" "" \
	date msgid "from=From: $MYLOGIN@example.org"

# ---------------------------------------------------------------------------
note "-f, -F, -N, -R, -V, -B"

q "$T/in/plain" -f bounce@example.com r@example.com
is "$(field "$QID" sender)" "bounce@example.com" "-f ADDR sets the envelope sender"
check_stored "-f ADDR without From: adds From: ADDR" "$QID" "$T/in/plain" "" date msgid \
	"from=From: bounce@example.com"

q "$T/in/plain" -fattached@example.com r@example.com
is "$(field "$QID" sender)" "attached@example.com" "-fADDR (attached) sets the envelope sender"

q "$T/in/plain" -r 'R Name <rflag@example.com>' r@example.com
is "$(field "$QID" sender)" "rflag@example.com" "-r 'Name <addr>' sets the envelope sender to addr"

q "$T/in/plain" -f '<>' r@example.com
is "$(field "$QID" sender)" "" "-f '<>' gives the null sender"
from_line=$(stored_header "$QID" | grep -i '^From:' || true)
like "$from_line" '^From: ([^<>@]*<)?[^<>@ ]+@[^<>@ ]+>?$' \
	"-f '<>': the added From: is a valid mailbox (local@domain)"

q "$T/in/plain" -F 'Jane Plain' r@example.com
check_stored "-F NAME: added From: has the plain name" "$QID" "$T/in/plain" "" date msgid \
	"from=From: Jane Plain <$MYLOGIN@example.org>"
q "$T/in/plain" -F 'John Q. Public' -f jqp@example.com r@example.com
check_stored "-F with specials: the name is quoted" "$QID" "$T/in/plain" "" date msgid \
	'from=From: "John Q. Public" <jqp@example.com>'
q "$T/in/h3" -F 'Not Used' r@example.com
is "$(stored_header "$QID" | grep -i '^From:')" "FROM: Someone <someone@example.com>" \
	"-F does not touch a message that has From:"

q "$T/in/plain" -N success,failure -R hdrs -V env-123.abc -B 8BITMIME r@example.com
is "$SUB_RC" 0 "-N, -R, -V, -B are accepted"
is "$(field "$QID" envid)" "env-123.abc" "-V shows as envid in list --json"
q "$T/in/plain" -N never -R full -Venv2 -B7BIT r@example.com
is "$(field "$QID" envid)" "env2" "-Vattached envid"
q "$T/in/plain" -Nsuccess,delay -Rhdrs r@example.com
is "$SUB_RC" 0 "-Nlist and -Rhdrs attached are accepted"

# ---------------------------------------------------------------------------
note "dot termination: without -i a lone dot ends the input"

printf 'Subject: dots\n\nline1\n..\n.x\n .\n.\nafter the dot\n' >"$T/in/d1"
printf 'Subject: dots\n\nline1\n..\n.x\n .\n' >"$T/in/d1.cut"
q "$T/in/d1" r@example.com
check_stored "LF, no -i: input ends at the lone dot, other dot lines unchanged" "$QID" "$T/in/d1.cut" "" \
	date msgid "from=From: $MYLOGIN@example.org"
q "$T/in/d1" -i r@example.com
check_stored "LF, -i: the lone dot and what follows are kept" "$QID" "$T/in/d1" "" \
	date msgid "from=From: $MYLOGIN@example.org"
q "$T/in/d1" -oi r@example.com
check_stored "LF, -oi: the lone dot and what follows are kept" "$QID" "$T/in/d1" "" \
	date msgid "from=From: $MYLOGIN@example.org"

printf 'Subject: dots crlf\r\n\r\nline1\r\n..\r\n.\r\nafter\r\n' >"$T/in/d2"
printf 'Subject: dots crlf\r\n\r\nline1\r\n..\r\n' >"$T/in/d2.cut"
q "$T/in/d2" r@example.com
check_stored "CRLF, no -i: input ends at the lone dot; added lines end in CRLF" "$QID" "$T/in/d2.cut" "$CR" \
	date msgid "from=From: $MYLOGIN@example.org"
q "$T/in/d2" -oi r@example.com
check_stored "CRLF, -oi: everything kept; added lines end in CRLF" "$QID" "$T/in/d2" "$CR" \
	date msgid "from=From: $MYLOGIN@example.org"

printf 'Subject: dot in header\n.\nnot: stored\n' >"$T/in/d3"
printf 'Subject: dot in header\n' >"$T/in/d3.cut"
q "$T/in/d3" r@example.com
check_stored "no -i: a lone dot right after the header ends the input" "$QID" "$T/in/d3.cut" "" \
	date msgid "from=From: $MYLOGIN@example.org"

printf 'Subject: no final newline\n\nlast line' >"$T/in/d4"
q "$T/in/d4" -i r@example.com
check_stored "-i: a last line without a newline is stored as it came" "$QID" "$T/in/d4" "" \
	date msgid "from=From: $MYLOGIN@example.org"
q "$T/in/d4" r@example.com
check_stored "no -i: a last line without a newline is stored as it came" "$QID" "$T/in/d4" "" \
	date msgid "from=From: $MYLOGIN@example.org"

# A body line longer than any buffer, then a line that is a dot only at the
# start of the line: lines are not cut apart.
{
	printf 'Subject: long line\n\n'
	head -c 200000 /dev/zero | tr '\0' 'y'
	printf '\n.y\n'
	head -c 65535 /dev/zero | tr '\0' 'z'
	printf '.\nend\n'
} >"$T/in/d5"
q "$T/in/d5" r@example.com
check_stored "no -i: 200 kB and 64 kB lines kept whole, no false dot" "$QID" "$T/in/d5" "" \
	date msgid "from=From: $MYLOGIN@example.org"

# ---------------------------------------------------------------------------
note "ignored options, -odi, -bp, names sendmail and mailq"

q "$T/in/plain" -oem -odb -oQ/nonexistent -oXfoo -o Afoo -O DeliveryMode=b -L label -h 17 -U -m -n -G \
	r@example.com
is "$SUB_RC" 0 "ignored sendmail options are accepted"
is "$(addrs "$QID")" "r@example.com" "ignored options (and their arguments) are not recipients"

q "$T/in/plain" -odi r@example.com
is "$(find "$T/spool/maildrop" -type f | wc -l)" 0 "-odi: imported before exit (maildrop/ empty)"
like "$(ls "$T/spool/queue")" "$QID" "-odi: the body file is in queue/ on exit"

run "$MGATE" queue -bp
is "$RUN_STATUS" 0 "queue -bp exits 0"
like "$RUN_STDOUT" "^QUEUE ID" "queue -bp prints the list header"
like "$RUN_STDOUT" "$PLAIN_ID" "queue -bp lists a queued message"
like "$RUN_STDOUT" "-- [0-9]+ bytes in $(nmsg) messages" "queue -bp ends with the totals"
# The AGE column may tick between two listings: compare without it.
no_age() { sed -E 's/ +[0-9]+[smhd]  </ AGE  </'; }
list_out=$("$MGATE" list 2>/dev/null | no_age)

run "$T/bin/sendmail" -bp
is "$RUN_STATUS" 0 "sendmail -bp exits 0"
is "$(no_age <<<"$RUN_STDOUT")" "$list_out" "sendmail -bp prints what mgate list prints"
run "$T/bin/mailq"
is "$RUN_STATUS" 0 "mailq exits 0"
is "$(no_age <<<"$RUN_STDOUT")" "$list_out" "mailq prints what mgate list prints"
run "$T/bin/mailq" --json
is "$(jq length <<<"$RUN_STDOUT")" "$(nmsg)" "mailq --json is the JSON list"

submit "$T/in/t2" "$T/bin/sendmail" -v -oem -oi -- r@example.com s@example.com
is "$SUB_RC" 0 "sendmail -oem -oi -- rcpts (mutt style) exits 0"
like "$SUB_ERR" "(^|$NL)sendmail: queued as" "messages are prefixed with the name sendmail"
is "$(addrs "$QID")" "r@example.com
s@example.com" "sendmail -oem -oi -- rcpts: only the arguments are recipients"
refused 65 "after --, '-t' is an address (refused), not a flag" "address begins with '-'" "$T/in/t2" \
	"$T/bin/sendmail" -oi -- r@example.com -t
submit "$T/in/t1" "$T/bin/sendmail" -v -i -t
is "$SUB_RC" 0 "sendmail -i -t (mailx style) exits 0"
is "$(addrs "$QID" | wc -l)" 12 "sendmail -i -t: all 12 recipients"
check_stored "sendmail -i -t: Bcc removed" "$QID" "$T/in/t1.nobcc" ""
submit "$T/in/plain" "$T/bin/sendmail" -v -i r@example.com s@example.com
is "$SUB_RC" 0 "sendmail -i rcpts (git send-email style) exits 0"
is "$(addrs "$QID")" "r@example.com
s@example.com" "sendmail -i rcpts: recipients"
submit "$T/in/plain" "$T/bin/sendmail" -v -C "$MGATE_CONFIG" -i r@example.com
is "$SUB_RC" 0 "sendmail -C CONFIG is accepted"

# pickup_after_queue = yes: a background pickup imports the message.
sed 's/^pickup_after_queue = no$/pickup_after_queue = yes/' "$MGATE_CONFIG" >"$T/auto.conf"
submit "$T/in/plain" "$MGATE" -c "$T/auto.conf" -v queue r@example.com
is "$SUB_RC" 0 "queue with pickup_after_queue = yes exits 0"
maildrop_empty() { [ -z "$(find "$T/spool/maildrop" -type f)" ]; }
ok "pickup_after_queue = yes: maildrop/ empties without a list" wait_for 10 maildrop_empty
like "$(ls "$T/spool/queue")" "$QID" "pickup_after_queue = yes: the message is in the queue"

# ---------------------------------------------------------------------------
note "refusals: exit code, message, nothing stored"

refused 64 "no recipients" 'no recipients' "$T/in/plain" "$MGATE" queue
refused 64 "-t and no recipient fields" 'no recipients' "$T/in/plain" "$MGATE" queue -t
printf 'To: Group:;\nSubject: only an empty group\n\nx\n' >"$T/in/r1"
refused 64 "-t and only an empty group" 'no recipients' "$T/in/r1" "$MGATE" queue -t
refused 64 "unknown flag -Z" 'unknown option -Z' "$T/in/plain" "$MGATE" queue -Z r@example.com
refused 64 "sendmail: unknown flag -Z" '^sendmail: unknown option -Z' "$T/in/plain" "$T/bin/sendmail" -Z r@example.com
refused 64 "-f without its argument" 'option -f needs an argument' "$T/in/plain" "$MGATE" queue -f
refused 64 "unsupported mode -bs" '-bs' "$T/in/plain" "$MGATE" queue -bs r@example.com
refused 64 "bad -N" '-N bogus' "$T/in/plain" "$MGATE" queue -N bogus r@example.com
refused 64 "bad -R" '-R most' "$T/in/plain" "$MGATE" queue -R most r@example.com
refused 64 "bad -V (has a space)" '-V' "$T/in/plain" "$MGATE" queue -V 'a b' r@example.com
refused 64 "bad -B" '-B 9BIT' "$T/in/plain" "$MGATE" queue -B 9BIT r@example.com

refused 65 "malformed address bad@@x" 'bad recipient address.*bad@@x' "$T/in/plain" \
	"$MGATE" queue r@example.com 'bad@@x'
refused 65 "address with a space in the local part" 'bad recipient address' "$T/in/plain" \
	"$MGATE" queue 'a b@example.com'
refused 65 "unterminated angle bracket" 'bad recipient address' "$T/in/plain" "$MGATE" queue '<a@example.com'
printf 'To: ok@example.com, <<bad\nSubject: bad to\n\nx\n' >"$T/in/r2"
refused 65 "-t: malformed To:" 'bad address in To: header' "$T/in/r2" "$MGATE" queue -t
printf 'To: ok@example.com\nCc: "unterminated@example.com\nSubject: bad cc\n\nx\n' >"$T/in/r3"
refused 65 "-t: malformed Cc:" 'bad address in Cc: header' "$T/in/r3" "$MGATE" queue -t
refused 65 "malformed -f sender" 'bad sender address' "$T/in/plain" "$MGATE" queue -f 'x@@y' r@example.com

: >"$T/in/empty"
refused 65 "empty input" 'empty message' "$T/in/empty" "$MGATE" queue r@example.com
printf '.\n' >"$T/in/dotonly"
refused 65 "input that is only a lone dot" 'empty message' "$T/in/dotonly" "$MGATE" queue r@example.com

printf 'Subject: nul\n\nbefore\0after\n' >"$T/in/nul"
refused 65 "NUL byte in the body" 'NUL' "$T/in/nul" "$MGATE" queue r@example.com
refused 65 "NUL byte in the body, -i" 'NUL' "$T/in/nul" "$MGATE" queue -i r@example.com
printf 'Subject: nul\0in header\n\nbody\n' >"$T/in/nulh"
refused 65 "NUL byte in the header" 'NUL' "$T/in/nulh" "$MGATE" queue r@example.com
cp "$MGATE_CONFIG" "$T/nul.conf"
echo 'allow_nul_bytes = yes' >>"$T/nul.conf"
submit "$T/in/nul" "$MGATE" -c "$T/nul.conf" -v queue -i r@example.com
is "$SUB_RC" 0 "allow_nul_bytes = yes: a NUL byte is accepted"
check_stored "allow_nul_bytes = yes: the NUL byte is stored" "$QID" "$T/in/nul" "" date msgid \
	"from=From: $MYLOGIN@example.org"

cp "$MGATE_CONFIG" "$T/small.conf"
echo 'message_size_limit = 2048' >>"$T/small.conf"
{ printf 'Subject: big\n\n'; head -c 4000 /dev/zero | tr '\0' 'x'; printf '\n'; } >"$T/in/big"
refused 65 "message over message_size_limit" 'message_size_limit' "$T/in/big" \
	"$MGATE" -c "$T/small.conf" queue r@example.com
refused 65 "message over message_size_limit, -i" 'message_size_limit' "$T/in/big" \
	"$MGATE" -c "$T/small.conf" queue -i r@example.com
submit "$T/in/plain" "$MGATE" -c "$T/small.conf" -v queue r@example.com
is "$SUB_RC" 0 "a small message under the same limit is accepted"

{ printf 'Subject: '; head -c 10485760 /dev/zero | tr '\0' 'h'; printf '\n\nbody\n'; } >"$T/in/hdr10m"
refused 65 "a 10 MB header line" 'header_size_limit' "$T/in/hdr10m" "$MGATE" queue r@example.com
refused 65 "a 10 MB header line, -i -t" 'header_size_limit' "$T/in/hdr10m" "$MGATE" queue -i -t r@example.com

cp "$MGATE_CONFIG" "$T/rl.conf"
echo 'recipient_limit = 2' >>"$T/rl.conf"
refused 65 "more than recipient_limit recipients" 'recipient_limit' "$T/in/plain" \
	"$MGATE" -c "$T/rl.conf" queue a@example.com b@example.com c@example.com

# Configuration: missing, unreadable, invalid.
refused 78 "missing configuration (MGATE_CONFIG)" "$T/nonexistent.conf.*cannot open" "$T/in/plain" \
	env MGATE_CONFIG="$T/nonexistent.conf" "$MGATE" queue r@example.com
refused 78 "missing configuration (-c)" "$T/nonexistent.conf" "$T/in/plain" \
	"$MGATE" -c "$T/nonexistent.conf" queue r@example.com
refused 78 "missing configuration (sendmail -C)" "$T/nonexistent.conf" "$T/in/plain" \
	"$T/bin/sendmail" -C "$T/nonexistent.conf" r@example.com
refused 78 "configuration is a directory" "$T/spool" "$T/in/plain" "$MGATE" -c "$T/spool" queue r@example.com
cp "$MGATE_CONFIG" "$T/unreadable.conf"
chmod 000 "$T/unreadable.conf"
if [ "$(id -u)" = 0 ]; then
	if setpriv --reuid=65534 --regid=65534 --clear-groups "$MGATE" --version >/dev/null 2>&1; then
		refused 78 "unreadable configuration (as nobody)" "$T/unreadable.conf" "$T/in/plain" \
			setpriv --reuid=65534 --regid=65534 --clear-groups "$MGATE" -c "$T/unreadable.conf" \
			queue r@example.com
	else
		skip "user nobody cannot run $MGATE" 4
	fi
else
	refused 78 "unreadable configuration" "$T/unreadable.conf" "$T/in/plain" \
		"$MGATE" -c "$T/unreadable.conf" queue r@example.com
fi
printf 'spool_directory = %s\nthis is not a setting\n' "$T/spool" >"$T/syntax.conf"
refused 78 "configuration syntax error names file:line" "$T/syntax.conf:2: " "$T/in/plain" \
	"$MGATE" -c "$T/syntax.conf" queue r@example.com
printf '# comment\n\nspool_directory = %s\nmessage_size_limit = lots\n' "$T/spool" >"$T/value.conf"
refused 78 "bad value names file:line and the key" "$T/value.conf:4: message_size_limit" "$T/in/plain" \
	"$MGATE" -c "$T/value.conf" queue r@example.com
printf 'spool_directory = %s\nno_such_key = 1\n' "$T/spool" >"$T/key.conf"
refused 78 "unknown key names file:line and the key" "$T/key.conf:2: .*no_such_key" "$T/in/plain" \
	"$MGATE" -c "$T/key.conf" queue r@example.com
run "$MGATE" -c "$T/syntax.conf" check-config
is "$RUN_STATUS" 78 "check-config of a bad file exits 78"
like "$RUN_STDERR" "$T/syntax.conf:2: " "check-config says file:line"

# Spool unwritable: its parent is a regular file (chmod does not stop root).
: >"$T/afile"
sed "s#^spool_directory = .*#spool_directory = $T/afile/spool#" "$MGATE_CONFIG" >"$T/unw.conf"
refused 75 "spool directory unwritable (under a regular file)" 'cannot create.*try again' "$T/in/plain" \
	"$MGATE" -c "$T/unw.conf" queue r@example.com
refused 75 "sendmail: spool directory unwritable" '^sendmail: .*try again' "$T/in/plain" \
	"$T/bin/sendmail" -C "$T/unw.conf" -i r@example.com
# A spool whose tmp/ is gone.
mkdir -p "$T/broken/maildrop"
sed "s#^spool_directory = .*#spool_directory = $T/broken#" "$MGATE_CONFIG" >"$T/broken.conf"
refused 75 "spool without tmp/" 'try again' "$T/in/plain" "$MGATE" -c "$T/broken.conf" queue r@example.com
is "$(find "$T/broken" -type f | wc -l)" 0 "spool without tmp/: no file written anywhere"

# ---------------------------------------------------------------------------
note "hold, release, delete, cat"

q "$T/in/plain" h1@example.com h2@example.com
HID=$QID
is "$(states "$HID")" "queued queued" "new message: recipients queued"
updated0=$("$MGATE" list --json 2>/dev/null | jq -r --arg id "$HID" '.[] | select(.id == $id) | .recipients[0].updated')
run "$MGATE" hold "$HID"
is "$RUN_STATUS" 0 "hold exits 0"
like "$RUN_STDERR" "$HID: held" "hold logs a line with the ID"
is "$(states "$HID")" "held held" "after hold: recipients held"
updated1=$("$MGATE" list --json 2>/dev/null | jq -r --arg id "$HID" '.[] | select(.id == $id) | .recipients[0].updated')
ok "hold does not move 'updated' backwards ($updated0 -> $updated1)" test "$updated1" -ge "$updated0"
is "$(states "$PLAIN_ID")" "queued queued queued queued" "hold touches no other message"
run "$MGATE" hold "$HID"
is "$RUN_STATUS" 0 "hold again exits 0"
like "$RUN_STDERR" "nothing to hold" "hold again: nothing to hold"
is "$(states "$HID")" "held held" "hold again: still held"
run "$MGATE" release "$HID"
is "$RUN_STATUS" 0 "release exits 0"
like "$RUN_STDERR" "$HID: released" "release logs a line with the ID"
is "$(states "$HID")" "queued queued" "after release: recipients queued"
run "$MGATE" release "$HID"
like "$RUN_STDERR" "nothing to release" "release of a queued message: nothing to release"
run "$MGATE" hold "$HID" "$PLAIN_ID"
is "$RUN_STATUS" 0 "hold of two IDs exits 0"
is "$(states "$HID") / $(states "$PLAIN_ID")" "held held / held held held held" "hold of two IDs holds both"
ok "release of two IDs" "$MGATE" release "$HID" "$PLAIN_ID"
is "$(states "$HID") / $(states "$PLAIN_ID")" "queued queued / queued queued queued queued" \
	"release of two IDs releases both"

n_before=$(nmsg)
run "$MGATE" delete "$HID"
is "$RUN_STATUS" 0 "delete exits 0"
like "$RUN_STDERR" "$HID: removed" "delete logs a line with the ID"
is "$(nmsg)" "$((n_before - 1))" "delete: one message fewer"
is "$(addrs "$HID")" "" "delete: the ID is gone from list --json"
unlike "$(ls "$T/spool/queue")" "$HID" "delete: the body file is gone"
run "$MGATE" cat "$HID"
is "$RUN_STATUS" 66 "cat of a deleted ID exits 66"
like "$RUN_STDERR" "$HID: no such message" "cat of a deleted ID says so"
run "$MGATE" cat 0000000000000000
is "$RUN_STATUS" 66 "cat of an unknown ID exits 66 (EX_NOINPUT)"
like "$RUN_STDERR" "0000000000000000: no such message" "cat of an unknown ID says so"
run "$MGATE" cat ../../etc/passwd
is "$RUN_STATUS" 66 "cat of a path-like ID exits 66"
is "$RUN_STDOUT" "" "cat of a path-like ID prints nothing"
for op in hold release delete; do
	run "$MGATE" "$op" 0000000000000000
	is "$RUN_STATUS" 66 "$op of an unknown ID exits 66"
done
run "$MGATE" cat
is "$RUN_STATUS" 64 "cat without an ID exits 64"
is "$(nmsg)" "$((n_before - 1))" "failed operations changed nothing"

# ---------------------------------------------------------------------------
note "check-config"

run "$MGATE" check-config
is "$RUN_STATUS" 0 "check-config exits 0"
for kv in "spool_directory = $T/spool" "myhostname = site.example.org" "mydomain = example.org" \
	"log_destination = stderr" "message_size_limit = " "header_size_limit = " "recipient_limit = " \
	"allow_nul_bytes = no" "pickup_after_queue = no"; do
	like "$RUN_STDOUT" "(^|$NL)$kv" "check-config prints '$kv'"
done
run "$MGATE" check-config --keys
is "$RUN_STATUS" 0 "check-config --keys exits 0"
for k in spool_directory myhostname mydomain log_destination message_size_limit header_size_limit \
	recipient_limit allow_nul_bytes pickup_after_queue; do
	like "$RUN_STDOUT" "(^|$NL)$k " "check-config --keys documents $k"
done

# Nothing left behind by all of the above.
spool_clean "end of test"

done_testing
