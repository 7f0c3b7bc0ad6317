#!/bin/sh
# bundle.sh - build and run the bundle benchmark (bench/bundle_bench.c)
# against the shared corpus.  Run from the repository root:
#   bench/bundle.sh [CORPUS_DIR]
set -eu
out=${B:-build}/bundle_bench
mkdir -p "$(dirname "$out")"
${CC:-cc} -std=gnu11 -O2 -Wall -Wextra -Iinclude -include stddef.h \
    -o "$out" bench/bundle_bench.c src/bundle.c src/bundle_dec.c \
    src/bundle_dict.c src/keys.c src/buf.c src/err.c src/log.c \
    src/stream.c $(pkg-config --libs libcrypto zlib)
exec "$out" "${1:-${MGATE_CORPUS:-../shared/corpus/spamassassin-public}}"
