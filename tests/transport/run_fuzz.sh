#!/usr/bin/env bash
# Bounded libFuzzer run over the wire decoder, seeded with valid messages of every type.
set -euo pipefail
fuzzer=$1
seconds=${2:-60}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus"
# Seeds: one valid header per type (frame count byte 1 = two frames), written by python.
/usr/bin/env python3 - "$work/corpus" <<'PY'
import struct, sys, os
out = sys.argv[1]
def hdr(t, dtype=0, shape=(0,0,0,0), payload=b'', flags=0, aux=(0,0,0,0), scale=1.0, extra=0):
    h = struct.pack('<IHHIIIiQqq4IBBHI4ifIII', 0x4d545353, 1, t, 1, 2, 3, -1, 4, 10, 20,
                    *shape, dtype, flags, 0, len(payload), *aux, scale, extra, 0, 0)
    assert len(h) == 104
    return bytes([1]) + h + payload
seeds = [
    hdr(1, 1, (4,4,3,1), bytes(48), aux=(0,0,4,4), extra=250),
    hdr(2, 1, (2,2,3,1), bytes(12), aux=(0,0,2,2), extra=250),
    hdr(3, 2, (4,1,1,1), struct.pack('<4f', 1, 2, 3, 4)),
    hdr(4, 3, (5,1,1,1), b'id=a\n'),
    hdr(5, flags=1), hdr(6, 3, (3,1,1,1), b'err'), hdr(7), hdr(8), hdr(9, 3, (4,1,1,1), b'x=1\n'),
]
for i, s in enumerate(seeds):
    open(os.path.join(out, 'seed%d' % i), 'wb').write(s)
PY
echo "wire.fuzz: running $fuzzer for ${seconds}s"
"$fuzzer" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 "$work/corpus" 2>&1 | tail -n 15
