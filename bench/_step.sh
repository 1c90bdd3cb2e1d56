# Sourced by bench/gpu_check.sh: `step CMD...` runs one check under its own time limit.
#
# GPU_CHECK_STEP_S (default 180) seconds, then SIGABRT to the step's process group: with
# PYTHONFAULTHANDLER=1 every Python process of it prints where it stood before it dies, and
# SIGKILL 15 s later if it still lives. A step that fails or hangs is reported in one line and
# the script goes on: one hang must not cost the rest of a short GPU lease.
step() {
  local rc=0 t0=$SECONDS limit=${GPU_CHECK_STEP_S:-180}
  timeout -s ABRT -k 15 "$limit" "$@" || rc=$?
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 134 ] || [ "$rc" -eq 137 ]; then
    echo "  !! timed out after $((SECONDS - t0)) s (limit ${limit} s, rc $rc): $*"
  elif [ "$rc" -ne 0 ]; then
    echo "  !! failed with rc $rc after $((SECONDS - t0)) s: $*"
  fi
  return 0
}
