#!/usr/bin/env bash
# transport.security.stages — CURVE between real stage processes (tiler → count over tcp), as a
# user runs them: `slidestream keys new` and its files; a collector that trusts the tiler's key
# gets the whole stream; one that does not refuses it and logs the refusal with the peer's
# address (and the tiler says its key was refused); a non-loopback bind without keys is refused
# with the way out, --insecure allows it with a warning; `slidestream run` makes its run
# directory 0700 and hands keys=DIR to every stage.
set -u
ss=${SLIDESTREAM:?SLIDESTREAM not set}
. "$(dirname "$0")/../cli.sh"
dir=$(mktemp -d /tmp/ss-curve.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
cd "$dir" || exit 1
base=$((20000 + $$ % 20000))
p1=$base p2=$((base + 1))
mode() { stat -c %a "$1"; }

# --- keys new: files, modes, no silent overwrite ---------------------------------------------
"$ss" keys new keys/collector > new.out || fail "keys new"
[ "$(mode keys/collector)" = 700 ] || fail "key directory mode $(mode keys/collector), want 700"
[ "$(mode keys/collector/key.secret)" = 600 ] || fail "key.secret mode $(mode keys/collector/key.secret)"
[ "$(mode keys/collector/key.pub)" = 644 ] || fail "key.pub mode $(mode keys/collector/key.pub)"
grep -qF "$(tail -1 keys/collector/key.pub)" new.out || fail "keys new does not print the public key"
cp keys/collector/key.pub before.pub
expect "a second keys new" "already holds a key pair" "$ss" keys new keys/collector
cmp -s before.pub keys/collector/key.pub || fail "the refused keys new changed key.pub"
"$ss" keys new keys/collector --force > /dev/null || fail "keys new --force"
cmp -s before.pub keys/collector/key.pub && fail "keys new --force kept the old key"
expect "keys new without a directory" "which directory" "$ss" keys new
"$ss" keys new keys/tiler > /dev/null && "$ss" keys new keys/stranger > /dev/null || fail "keys new"
mkdir trusted && cp keys/tiler/key.pub trusted/tiler.pub
echo "ok: keys new writes key.secret 0600 and key.pub 0644, refuses to overwrite without --force"

"$ss" synth slide --out s.tiff --width 1200 --height 1200 --mpp 0.25 --seed 3 --quiet || fail "synth"

# collector KEYS TRUST TAG: count binding both endpoints on loopback with CURVE, in the background
collector() {
  "$ss" count --in "@tcp://127.0.0.1:$p1" --control "@tcp://127.0.0.1:$p2" --parts-are-items \
      --idle-timeout 3 --keys "$1" --trust "$2" --quiet > "$3.count.out" 2> "$3.count.err" &
  cpid=$!
}
# tiler KEYS TAG [seconds]: tiler connecting to the collector, trusting the collector's key
tiler() {
  timeout "${3:-60}" "$ss" tiler --out ">tcp://127.0.0.1:$p1" --control ">tcp://127.0.0.1:$p2" \
      --keys "$1" --trust keys/collector/key.pub --tile 256 --quiet s.tiff 2> "$2.tiler.err"
}

# --- a trusted tiler: the whole stream arrives ------------------------------------------------
collector keys/collector trusted ok
tiler keys/tiler ok; trc=$?
wait $cpid; crc=$?
cat ok.count.out ok.count.err ok.tiler.err
[ $trc -eq 0 ] && [ $crc -eq 0 ] || fail "trusted tiler: tiler exit $trc, count exit $crc"
grep -q "complete" ok.count.out || fail "trusted tiler: the stream is not complete"
echo "ok: a collector that trusts the tiler's key collected the whole stream over CURVE"

# --- an untrusted tiler: refused, and the refusal logged with its address ---------------------
collector keys/collector trusted bad
tiler keys/stranger bad 4 & tpid=$!
want="refused a peer at 127.0.0.1 on tcp://127.0.0.1:$p1: its public key $(tail -1 keys/stranger/key.pub) is not trusted"
for _ in $(seq 100); do grep -qF "$want" bad.count.err && break; sleep 0.1; done
wait $tpid; trc=$?
kill $cpid 2>/dev/null; wait $cpid
cat bad.count.out bad.count.err bad.tiler.err
grep -qF "$want" bad.count.err || fail "the collector did not log the refusal: want '$want'"
grep -q "refused this stage's key" bad.tiler.err || fail "the refused tiler did not say so"
grep -q "collected 0 items" bad.count.out || fail "the untrusted tiler's tiles got through"
[ $trc -eq 124 ] || fail "the refused tiler exited $trc (it should be waiting)"
echo "ok: an untrusted tiler was refused and the refusal logged with its address"

# --- key files that are not safe or not keys are refused, naming the file ---------------------
cp -r keys/tiler leaky && chmod 644 leaky/key.secret
expect "a secret key others can read" "leaky/key.secret: the secret key can be read by other users" \
  "$ss" count --in "@tcp://127.0.0.1:$p1" --control "@tcp://127.0.0.1:$p2" --keys leaky
expect "--trust without --keys" "needs --keys" \
  "$ss" count --in "@tcp://127.0.0.1:$p1" --control "@tcp://127.0.0.1:$p2" --trust trusted

# --- non-loopback binds: refused without keys, allowed (with a warning) by --insecure ---------
for ep in "tcp://0.0.0.0:$p1" "tcp://*:$p1"; do
  expect "bind $ep without keys" "slidestream keys new DIR" \
    "$ss" count --in "@$ep" --control "@tcp://127.0.0.1:$p2"
  out=$("$ss" count --in "@$ep" --control "@tcp://127.0.0.1:$p2" 2>&1)
  echo "$out" | grep -q -- "--insecure" || fail "the refusal does not mention --insecure: $out"
done
"$ss" count --in "@tcp://0.0.0.0:$p1" --control "@tcp://127.0.0.1:$p2" --insecure --quiet \
    > insecure.out 2> insecure.err & ipid=$!
for _ in $(seq 50); do grep -q "without keys (--insecure)" insecure.err && break; sleep 0.1; done
kill $ipid 2>/dev/null; wait $ipid
grep -q "warning: count: binding tcp://0.0.0.0:$p1 without keys (--insecure)" insecure.err ||
  fail "--insecure: no warning: $(cat insecure.err)"
echo "ok: non-loopback binds without keys are refused; --insecure allows them with a warning"

# --- slidestream run: a private run directory; keys=DIR reaches every stage -------------------
cat > t.conf <<EOF
name = t
set p1 = $p1
set p2 = $p2
pre = synth slide --out \${rundir}/s.tiff --width 1200 --height 1200 --mpp 0.25 --seed 3 --quiet
stage tiler = tiler --out @tcp://0.0.0.0:\${p1} --control >tcp://127.0.0.1:\${p2} --tile 256 \${rundir}/s.tiff
sink count = count --in >tcp://127.0.0.1:\${p1} --control @tcp://127.0.0.1:\${p2} --parts-are-items
EOF
"$ss" run t.conf rundir=runs/plain --quiet > plain.out 2>&1 && fail "run: a 0.0.0.0 bind without keys was allowed"
[ "$(mode runs/plain)" = 700 ] || fail "run directory mode $(mode runs/plain), want 700"
grep -q "refusing to bind tcp://0.0.0.0:$p1 without keys" plain.out || fail "run: the refusal is not shown: $(cat plain.out)"
mkdir -p runs/keyed && chmod 755 runs/keyed
"$ss" run t.conf rundir=runs/keyed keys=keys/collector --quiet > keyed.out 2>&1 ||
  fail "run with keys=DIR: $(cat keyed.out)"
[ "$(mode runs/keyed)" = 700 ] || fail "an existing 0755 run directory stayed $(mode runs/keyed)"
grep -q "was mode 0755" keyed.out || fail "run: closing the run directory drew no warning"
grep -q '"status": "ok"' runs/keyed/report.json || fail "run with keys: not ok"
expect "run with a key directory that does not exist" "keys: --keys nope: not a directory" \
  "$ss" run t.conf rundir=runs/nope keys=nope --quiet
echo "ok: slidestream run makes its run directory 0700 and gives keys=DIR to every stage"
echo "PASS"
