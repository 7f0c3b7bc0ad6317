#!/usr/bin/env bash
# 30-corpus.t - every message of the shared SpamAssassin corpus (all five
# directories, mbox "From " line stripped) is queued with
# `mgate -v queue -i rcpt@example.net' and read back with `mgate cat'.  The
# stored message must be the input byte for byte with only documented lines
# on top: the two Received lines, then Date:, Message-ID: and From: for each
# of those fields the input lacks (in that order, with the input's line
# ending).  `list --json' must show every message once with the right
# envelope and size.  Queueing and reading run four at a time
# (MGATE_CORPUS_JOBS): the time goes into fsync waits, not CPU.
. "$(dirname "$0")/lib/testlib.sh"
need_mgate
CORPUS=$(corpus_dir) || _tap_missing "the shared corpus (../shared/corpus/spamassassin-public)"
mgate_setup
# One pickup at the end instead of one per message.
echo 'pickup_after_queue = no' >>"$MGATE_CONFIG"
ok "mgate init" "$MGATE" init

MYUID=$(id -u)
MYLOGIN=$(id -un)
NL=$'\n'
START=$SECONDS

cat >"$T/corpus.py" <<'PY'
"""Queue every corpus file, then (after one pickup) read each back and check.

argv: phase (queue|check) corpus mgate state-dir uid login
queue: writes state-dir/ids.tsv (id TAB relative path) and queue failures.
check: reads ids.tsv and list.json, writes the result lines the .t reads.
"""
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

phase, corpus, mgate, state, uid, login = sys.argv[1:7]
JOBS = int(os.environ.get('MGATE_CORPUS_JOBS', '4'))
FIELD = re.compile(rb'^[\x21-\x39\x3b-\x7e]+:')
DATE = (rb'(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{2}) '
        rb'(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{4}) '
        rb'(\d{2}):(\d{2}):(\d{2}) [+-]\d{4}')
MONTHS = [b'Jan', b'Feb', b'Mar', b'Apr', b'May', b'Jun', b'Jul', b'Aug',
          b'Sep', b'Oct', b'Nov', b'Dec']


def files():
    out = []
    for d in sorted(os.listdir(corpus)):
        if os.path.isdir(os.path.join(corpus, d)):
            for f in sorted(os.listdir(os.path.join(corpus, d))):
                out.append(d + '/' + f)
    return out


def message(rel):
    """The file without a leading mbox "From " line (as strip_from_line)."""
    with open(os.path.join(corpus, rel), 'rb') as fp:
        data = fp.read()
    if data.startswith(b'From '):
        nl = data.find(b'\n')
        data = data[nl + 1:] if nl >= 0 else b''
    return data


def header_info(data):
    """(field names present (lower case), content less Bcc fields, has header).

    RFC 5322: the header is the lines up to the first empty line; a line
    starting with white space continues the field before it; anything else
    that is not "name:" ends the header (and starts the body).
    """
    names = set()
    lines = data.splitlines(True)
    kept = []
    skipping = False
    nfields = 0
    i = 0
    for i, line in enumerate(lines):
        if line in (b'\n', b'\r\n'):
            break
        if line[:1] in (b' ', b'\t') and nfields:
            if not skipping:
                kept.append(line)
            continue
        m = FIELD.match(line)
        if not m:
            break
        nfields += 1
        name = line[:m.end() - 1].lower()
        names.add(name)
        skipping = name == b'bcc'
        if not skipping:
            kept.append(line)
    else:
        i = len(lines)
    return names, b''.join(kept) + b''.join(lines[i:]), nfields > 0


def queue_one(rel):
    p = subprocess.run([mgate, '-v', 'queue', '-i', 'rcpt@example.net'],
                       input=message(rel), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    m = re.search(rb'queued as ([0-9A-Z]{16})', p.stderr)
    if p.returncode != 0 or not m:
        return rel, None, 'exit %d: %s' % (
            p.returncode, p.stderr.decode('utf-8', 'replace').strip())
    return rel, m.group(1).decode(), None


def check_one(item):
    """None if the stored message is right, else a one-line reason."""
    qid, rel = item
    data = message(rel)
    names, content, has_header = header_info(data)
    p = subprocess.run([mgate, 'cat', qid], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    out = p.stdout
    if p.returncode != 0:
        return 'cat exit %d: %s' % (p.returncode,
                                    p.stderr.decode('utf-8', 'replace').strip())
    if len(out) <= len(content) or not out.endswith(content):
        return ('stored message does not end with the input (stored %d '
                'bytes, input %d)' % (len(out), len(content)))
    prefix = out[:len(out) - len(content)]
    first = data.split(b'\n', 1)[0]
    eol = b'\r\n' if first.endswith(b'\r') and b'\n' in data else b'\n'
    m = re.match(rb'Received: by site\.example\.org \(mgate, from userid '
                 + uid.encode() + rb'\)' + eol + rb'\tid ' + qid.encode()
                 + rb'; (' + DATE + rb')' + eol, prefix)
    if not m:
        return 'no exact Received field on top: %r' % prefix[:160]
    date = m.group(1)
    day, mon, year, hh, mm, ss = m.group(2, 3, 4, 5, 6, 7)
    stamp = b'%s%02d%s%s%s%s' % (year, MONTHS.index(mon) + 1, day, hh, mm, ss)
    want = m.group(0)
    if b'date' not in names:
        want += b'Date: ' + date + eol
    if b'message-id' not in names:
        want += b'Message-ID: <' + stamp + b'.' + qid.encode() + \
            b'@example.org>' + eol
    if b'from' not in names:
        want += b'From: ' + login.encode() + b'@example.org' + eol
    if not has_header and not content.startswith(eol):
        want += eol
    if prefix != want:
        return 'added lines differ: got %r, expected %r' % (prefix, want)
    return None


def main():
    if phase == 'queue':
        with ThreadPoolExecutor(JOBS) as ex:
            res = list(ex.map(queue_one, files()))
        with open(os.path.join(state, 'ids.tsv'), 'w') as fp:
            for rel, qid, err in res:
                if qid:
                    fp.write('%s\t%s\n' % (qid, rel))
        with open(os.path.join(state, 'queue-failures'), 'w') as fp:
            for rel, qid, err in res:
                if err:
                    fp.write('%s: %s\n' % (rel, err))
        return
    items = []
    with open(os.path.join(state, 'ids.tsv')) as fp:
        for line in fp:
            qid, rel = line.rstrip('\n').split('\t')
            items.append((qid, rel))
    with ThreadPoolExecutor(JOBS) as ex:
        res = list(ex.map(check_one, items))
    bad = [(rel, why) for (qid, rel), why in zip(items, res) if why]
    # The queue listing: one entry per ID, right envelope, right size.
    with open(os.path.join(state, 'list.json')) as fp:
        listing = json.load(fp)
    by_id = {}
    dups = 0
    for m in listing:
        if m['id'] in by_id:
            dups += 1
        by_id[m['id']] = m
    env_bad = []
    for qid, rel in items:
        m = by_id.get(qid)
        if m is None:
            env_bad.append('%s (%s): not in list --json' % (rel, qid))
            continue
        rc = [(r['address'], r['state']) for r in m['recipients']]
        if (m['sender'] != login + '@example.org' or m['user'] != login
                or rc != [('rcpt@example.net', 'queued')]):
            env_bad.append('%s (%s): envelope %r' % (rel, qid, m))
    with open(os.path.join(state, 'result'), 'w') as fp:
        fp.write('checked %d\n' % len(items))
        fp.write('mismatches %d\n' % len(bad))
        fp.write('listed %d\n' % len(listing))
        fp.write('listed_unique %d\n' % len(by_id))
        fp.write('duplicates %d\n' % dups)
        fp.write('envelope_bad %d\n' % len(env_bad))
    with open(os.path.join(state, 'failures'), 'w') as fp:
        for rel, why in bad:
            fp.write('%s: %s\n' % (rel, why))
        for line in env_bad:
            fp.write(line + '\n')


main()
PY

total=$(find "$CORPUS" -mindepth 2 -maxdepth 2 -type f | wc -l)
note "corpus: $total files in $CORPUS"
if [ -z "${MGATE_CORPUS:-}" ]; then
	is "$total" 6046 "the corpus has its 6046 files (5 directories)"
fi

run_asan_aware "$PYTHON3" "$T/corpus.py" queue "$CORPUS" "$MGATE" "$T" "$MYUID" "$MYLOGIN" ||
	fail "the queue driver ran"
queued=$(wc -l <"$T/ids.tsv")
is "$queued" "$total" "every corpus message queued (exit 0, with a queue ID)" ||
	diag "$(head -n 5 "$T/queue-failures")"
is "$(cut -f1 "$T/ids.tsv" | sort -u | wc -l)" "$queued" "every queue ID is distinct"
is "$(find "$T/spool/maildrop" -type f | wc -l)" "$queued" "pickup_after_queue = no: all waiting in maildrop/"
note "queued $queued messages in $((SECONDS - START)) s"

ok "one mgate pickup imports them" "$MGATE" pickup
is "$(find "$T/spool/maildrop" "$T/spool/tmp" -type f | wc -l)" 0 "maildrop/ and tmp/ are empty after pickup"
"$MGATE" list --json >"$T/list.json" 2>"$T/list.err"
is "$?" 0 "list --json exits 0"

run_asan_aware "$PYTHON3" "$T/corpus.py" check "$CORPUS" "$MGATE" "$T" "$MYUID" "$MYLOGIN" ||
	fail "the check driver ran"
r() { sed -n "s/^$1 //p" "$T/result"; }
checked=$(r checked)
note "checked $checked messages read back with mgate cat in $((SECONDS - START)) s so far"
is "$checked" "$total" "every corpus message was checked"
is "$(r mismatches)" 0 "all $checked stored messages: the input byte for byte below only the documented added lines" ||
	diag "first failures:$NL$(grep -v ': envelope\|not in list' "$T/failures" | head -n 5)"
is "$(r listed)" "$total" "list --json shows one entry per message"
is "$(r duplicates)" 0 "no ID listed twice"
is "$(r envelope_bad)" 0 "every listed message: sender login@mydomain, user, one queued recipient rcpt@example.net" ||
	diag "first failures:$NL$(grep ': envelope\|not in list' "$T/failures" | head -n 5)"

# Sizes: list --json's size is the length of what cat prints (checked on a sample).
sample_bad=0
while IFS=$'\t' read -r id rel; do
	want=$(jq -r --arg id "$id" '.[] | select(.id == $id) | .size' "$T/list.json")
	got=$("$MGATE" cat "$id" 2>/dev/null | wc -c)
	if [ "$want" != "$got" ]; then
		sample_bad=$((sample_bad + 1))
		diag "$rel ($id): list says $want bytes, cat prints $got"
	fi
done < <(awk 'NR % 300 == 1' "$T/ids.tsv")
is "$sample_bad" 0 "list --json size equals the bytes cat prints (every 300th message)"

note "runtime $((SECONDS - START)) s"
done_testing
