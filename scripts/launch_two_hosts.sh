#!/usr/bin/env bash
# Run a dual-net training on two machines over ssh: net2 on one host, net1 on
# the other. Both hosts must have dualnet installed and the same paths (the
# repository folder, the solver, the data, and a `dualnet keys` folder).
#
#   scripts/launch_two_hosts.sh --solver solvers/lenet_dual_solver.prototxt \
#       --net1-host alpha --net2-host beta [--port 5555] [--keys keys/] \
#       [--workdir /path/to/dualnet] [--ssh "ssh -o BatchMode=yes"] [-- extra dualnet train args]
#
# Both logs stream back here, each line tagged by its role. Ctrl-C sends
# SIGINT to both roles, which snapshot at the same iteration and stop.
# Without --keys the link is unencrypted and needs --insecure (pass it after --).
set -euo pipefail

solver="" ; net1_host="" ; net2_host="" ; port=5555 ; keys="" ; workdir="$PWD" ; ssh_cmd="ssh"
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --solver) solver="$2"; shift 2 ;;
    --net1-host) net1_host="$2"; shift 2 ;;
    --net2-host) net2_host="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --keys) keys="$2"; shift 2 ;;
    --workdir) workdir="$2"; shift 2 ;;
    --ssh) ssh_cmd="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "launch_two_hosts: unknown option $1 (see --help)" >&2; exit 1 ;;
  esac
done
if [ -z "$solver" ] || [ -z "$net1_host" ] || [ -z "$net2_host" ]; then
  echo "launch_two_hosts: give --solver, --net1-host and --net2-host (see --help)" >&2
  exit 1
fi

run_id="dualnet.$$.$(date +%s)"
key_args=""
[ -n "$keys" ] && key_args="--keys $(printf %q "$keys")"
extra_args=""
for arg in "${extra[@]+"${extra[@]}"}"; do extra_args+=" $(printf %q "$arg")"; done

remote() {  # remote ROLE HOST ADDRESS-FLAG
  local role="$1" host="$2" address="$3"
  # Ctrl-C is for the trap below: the ssh sessions keep streaming the logs
  # while the roles snapshot and stop (ssh keeps SIGINT ignored when it is).
  trap '' INT
  # The role runs in the background on the host, its pid in a file, so that
  # Ctrl-C here can be turned into a SIGINT there.
  $ssh_cmd "$host" "cd $(printf %q "$workdir") && { dualnet train --solver $(printf %q "$solver") --role $role \
$address $key_args$extra_args & echo \$! > /tmp/$run_id.$role.pid; wait \$!; }" 2>&1 \
    | sed -u "s/^/[$host] /"
}

interrupted=0
stop_both() {
  interrupted=1
  trap 'interrupted=1' INT TERM
  echo "launch_two_hosts: stopping both roles (they snapshot first)" >&2
  for pair in "net1 $net1_host" "net2 $net2_host"; do
    set -- $pair
    $ssh_cmd "$2" "kill -INT \$(cat /tmp/$run_id.$1.pid) 2>/dev/null" || true
  done
}
trap stop_both INT TERM

remote net2 "$net2_host" "--bind tcp://0.0.0.0:$port" &
net2_job=$!
remote net1 "$net1_host" "--connect tcp://$net2_host:$port" &
net1_job=$!

finish() {  # the exit status of job $1, waiting again when a trapped signal interrupts `wait`
  local code
  while :; do
    interrupted=0
    wait "$1" && code=0 || code=$?
    [ "$interrupted" = 1 ] || return "$code"
  done
}
status=0
finish "$net1_job" || status=$?
finish "$net2_job" || status=$?
for pair in "net1 $net1_host" "net2 $net2_host"; do
  set -- $pair
  $ssh_cmd "$2" "rm -f /tmp/$run_id.$1.pid" 2>/dev/null || true
done
exit "$status"
