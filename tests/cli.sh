# Shared by the shell tests of commands (source it): fail and expect.
#   fail MESSAGE...                 print "FAIL: MESSAGE" and exit 1
#   expect WHAT WANT COMMAND...     COMMAND must fail, and its output must contain WANT (a bad
#                                   input refused with an error that names it); prints the line
#   step LOG WHAT COMMAND...        run COMMAND with its output in LOG; on failure show the
#                                   log's tail and fail with WHAT
fail() { echo "FAIL: $*"; exit 1; }

expect() {
  local what=$1 want=$2; shift 2
  local out
  out=$("$@" 2>&1) && fail "$what: accepted"
  echo "$out" | grep -qF -- "$want" || fail "$what: the error does not say '$want': $out"
  echo "ok: $what: $(echo "$out" | grep -F -- "$want" | head -1)"
}

step() {
  local log=$1 what=$2; shift 2
  "$@" > "$log" 2>&1 || { tail -20 "$log"; fail "$what"; }
}
