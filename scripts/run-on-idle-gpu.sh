#!/usr/bin/env bash
# The lab roadmap's orchestrator sample: wait for an idle GPU (by imagelab's non-sharing policy),
# run a command on it, repeat. The daemon does this properly; this is for plain scripts and cron.
#
# usage: run-on-idle-gpu.sh [options] -- COMMAND [ARGS...]
#        run-on-idle-gpu.sh [options] --jobs FILE
#
#   --count N         GPUs per run (default 1)
#   --times N         run COMMAND N times (default 1; 0 = until a run fails or Ctrl-C)
#   --jobs FILE       run each line of FILE (blank lines and # comments skipped) with bash -c
#   --timeout S       give up when no GPU is idle within S seconds (exit 1); default: wait for ever
#   --min-free-mib M  only GPUs with at least M MiB free
#   --background      start each run in the background and go on to the next idle GPU
#   --settle S        with --background: seconds a started run gets to show up on its GPU
#                     before the next pick (default 15), so it is not picked twice
#   --keep-going      go on after a failed run (default: stop at the first failure)
#
# Each run sees CUDA_VISIBLE_DEVICES=<picked indices>, CUDA_DEVICE_ORDER=PCI_BUS_ID (so CUDA's
# numbering matches NVML's) and IMAGELAB_RUN=<run number>. $IMAGELAB names the imagelab binary
# (default: imagelab on PATH).
#
# Exit status: 0 all runs succeeded; 1 timed out waiting for a GPU; 2 NVML unavailable or bad
# usage; otherwise the first failed run's status.
set -uo pipefail

imagelab="${IMAGELAB:-imagelab}"
count=1 times=1 jobs_file="" timeout="" min_free="" background=0 settle=15 keep_going=0

# Prints the comment block above (up to the first line that is not a comment).
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2; exit "${1:-2}"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --count) count="${2:?--count needs a number}"; shift 2 ;;
    --times) times="${2:?--times needs a number}"; shift 2 ;;
    --jobs) jobs_file="${2:?--jobs needs a file}"; shift 2 ;;
    --timeout) timeout="${2:?--timeout needs seconds}"; shift 2 ;;
    --min-free-mib) min_free="${2:?--min-free-mib needs MiB}"; shift 2 ;;
    --background) background=1; shift ;;
    --settle) settle="${2:?--settle needs seconds}"; shift 2 ;;
    --keep-going) keep_going=1; shift ;;
    -h|--help) usage 0 ;;
    --) shift; break ;;
    *) echo "run-on-idle-gpu: unknown option '$1'" >&2; usage ;;
  esac
done
for n in "$count" "$times" "$settle"; do
  case "$n" in ''|*[!0-9]*) echo "run-on-idle-gpu: '$n' is not a whole number" >&2; exit 2 ;; esac
done

commands=()
if [ -n "$jobs_file" ]; then
  [ $# -eq 0 ] || { echo "run-on-idle-gpu: give either --jobs or a command, not both" >&2; exit 2; }
  [ -r "$jobs_file" ] || { echo "run-on-idle-gpu: cannot read jobs file '$jobs_file'" >&2; exit 2; }
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in ''|'#'*) continue ;; esac
    commands+=("$line")
  done < "$jobs_file"
elif [ $# -eq 0 ]; then
  echo "run-on-idle-gpu: no command given" >&2; usage
fi

pick_args=(gpu-pick --count "$count" --wait)
[ -n "$timeout" ] && pick_args+=(--timeout "$timeout")
[ -n "$min_free" ] && pick_args+=(--min-free-mib "$min_free")

declare -A running_gpus=()   # background PID -> the GPUs it was started on
first_failure=0

note_failure() {
  echo "run-on-idle-gpu: run $1 failed with status $2" >&2
  [ "$first_failure" -ne 0 ] || first_failure="$2"
}

# Reaps finished background runs, so their GPUs can be picked again.
reap() {
  local pid status
  for pid in "${!running_gpus[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid"; status=$?
      [ "$status" -eq 0 ] || note_failure "pid $pid" "$status"
      unset "running_gpus[$pid]"
    fi
  done
}

# Prints picked GPU indices; exits the script on NVML trouble (2) or timeout (1).
pick_gpus() {
  local gpus status busy g pid
  while true; do
    gpus="$("$imagelab" "${pick_args[@]}")"; status=$?
    case "$status" in
      0) ;;
      1) echo "run-on-idle-gpu: no idle GPU within ${timeout}s" >&2; exit 1 ;;
      *) echo "run-on-idle-gpu: imagelab gpu-pick failed (status $status)" >&2; exit 2 ;;
    esac
    # A run we just started may not show up in NVML yet; never start two runs on one GPU.
    # (This runs in a command substitution, so it only looks: reaping happens in run_one.)
    busy=0
    for pid in "${!running_gpus[@]}"; do
      kill -0 "$pid" 2>/dev/null || continue
      for g in ${gpus//,/ }; do
        case "${running_gpus[$pid]}" in *",$g,"*) busy=1 ;; esac
      done
    done
    [ "$busy" -eq 0 ] && { echo "$gpus"; return; }
    sleep 1
  done
}

run_one() {
  local n="$1"; shift
  reap
  local gpus; gpus="$(pick_gpus)" || exit $?
  echo "run-on-idle-gpu: run $n on GPU(s) $gpus" >&2
  if [ "$background" -eq 1 ]; then
    CUDA_VISIBLE_DEVICES="$gpus" CUDA_DEVICE_ORDER=PCI_BUS_ID IMAGELAB_RUN="$n" "$@" &
    running_gpus[$!]=",$gpus,"
    sleep "$settle"
  else
    CUDA_VISIBLE_DEVICES="$gpus" CUDA_DEVICE_ORDER=PCI_BUS_ID IMAGELAB_RUN="$n" "$@"
    local status=$?
    if [ "$status" -ne 0 ]; then
      note_failure "$n" "$status"
      [ "$keep_going" -eq 1 ] || exit "$status"
    fi
  fi
}

n=0
if [ ${#commands[@]} -gt 0 ]; then
  for line in "${commands[@]}"; do
    n=$((n + 1)); run_one "$n" bash -c "$line"
  done
else
  while [ "$times" -eq 0 ] || [ "$n" -lt "$times" ]; do
    n=$((n + 1)); run_one "$n" "$@"
    [ "$keep_going" -eq 1 ] || [ "$first_failure" -eq 0 ] || break
  done
fi

for pid in "${!running_gpus[@]}"; do
  wait "$pid"; status=$?
  [ "$status" -eq 0 ] || note_failure "pid $pid" "$status"
done
exit "$first_failure"
