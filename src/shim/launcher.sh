#!/bin/sh
# containerd-shim-keel-v2 (dist/, made by scripts/build.ts from src/shim/launcher.sh).
#
# containerd runs this program for `start` and `delete` of every task and waits for each; a Node.js
# start costs tens of milliseconds, a shell's one or two. So the two common cases are answered
# here, and everything else is the Node.js shim (src/shim/main.ts), run with the same arguments:
#   start   of a container whose group (pod) already has a live shim daemon: write the daemon's
#           address into the bundle and print it — what main.ts's start does in that case;
#   delete  after a task its shim deleted (no container left in keel's state, no rootfs mount):
#           print the DeleteResponse the daemon wrote into the bundle — main.ts's cleanup.
# Whatever this script is not sure of (an unusual flag or name, no group annotation, no live
# daemon, anything left to clean up) goes to Node.js. The socket address is the one main.ts
# computes: unix://SOCKET_DIR/keel-<sha256 of ADDRESS/NAMESPACE/GROUP>.
node=@NODE@
case $0 in
  */*) here=${0%/*} ;;
  *) here=$(dirname "$(command -v "$0")") ;;
esac
full() { exec "$node" "$here/containerd-shim-keel-v2.launch.cjs" "$@"; }

socket_dir=@SOCKET_DIR@
keel_root=@KEEL_ROOT@
delete_response=@DELETE_RESPONSE_FILE@

namespace='' address='' id='' bundle='' action='' want=''
n=$#
i=0
for arg in "$@"; do
  i=$((i + 1))
  if [ -n "$want" ]; then
    eval "$want=\$arg"
    want=''
    continue
  fi
  case $arg in
    -namespace | --namespace) want=namespace ;;
    -address | --address) want=address ;;
    -id | --id) want=id ;;
    -bundle | --bundle) want=bundle ;;
    -publish-binary | --publish-binary) want=ignored ;;
    -namespace=* | --namespace=*) namespace=${arg#*=} ;;
    -address=* | --address=*) address=${arg#*=} ;;
    -id=* | --id=*) id=${arg#*=} ;;
    -bundle=* | --bundle=*) bundle=${arg#*=} ;;
    -publish-binary=* | --publish-binary=*) ;;
    -debug | --debug) full "$@" ;;
    -*) full "$@" ;;
    *) [ "$i" -eq "$n" ] && action=$arg || full "$@" ;;
  esac
done
[ -z "$want" ] || full "$@"

# Names taken as they are: letters, digits and . _ - (not . or ..); an absolute, plain path.
plain() {
  case $1 in '' | . | .. | *[!A-Za-z0-9._-]*) return 1 ;; esac
}
plain_path() {
  case $1 in
    /*) ;;
    *) return 1 ;;
  esac
  case $1 in
    *//* | */./* | */../* | */. | */.. | */ | *[!A-Za-z0-9._/-]*) return 1 ;;
  esac
}
plain "$namespace" && plain "$id" || full "$@"

case $action in
  start)
    plain_path "$address" && [ -r config.json ] || full "$@"
    group=''
    for label in io.containerd.runc.v2.group io.kubernetes.cri.sandbox-id; do
      key=$(printf '%s' "$label" | sed 's/\./\\./g')
      group=$(sed -n "s/.*\"$key\"[[:space:]]*:[[:space:]]*\"\([^\"\\\\]*\)\".*/\1/p" config.json)
      [ -z "$group" ] || break
    done
    plain "$group" || full "$@"
    hash=$(printf '%s' "$address/$namespace/$group" | sha256sum)
    hash=${hash%% *}
    sock=$socket_dir/keel-$hash
    [ -S "$sock" ] && [ -r "$sock.pid" ] || full "$@"
    pid=''
    read -r pid < "$sock.pid" || [ -n "$pid" ] || full "$@"  # no newline at its end: read says EOF
    case $pid in '' | *[!0-9]*) full "$@" ;; esac
    # The daemon is alive when the process of its pid file serves this very socket.
    cmdline=$(tr '\000' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || full "$@"
    case $cmdline in
      *containerd-shim-keel-v2-daemon*" -socket unix://$sock "*) ;;
      *) full "$@" ;;
    esac
    printf '%s' "unix://$sock" > "address.$$.tmp" && mv -f "address.$$.tmp" address || full "$@"
    printf '%s' "unix://$sock"
    exit 0
    ;;
  delete)
    [ -n "$bundle" ] || bundle=$(pwd -P)
    plain_path "$bundle" || full "$@"
    [ ! -e "$keel_root/$namespace/$id" ] && [ -r "$bundle/$delete_response" ] || full "$@"
    awk -v d="$bundle/rootfs" '$5 == d || index($5, d "/") == 1 { found = 1 } END { exit found ? 0 : 1 }' /proc/self/mountinfo && full "$@"
    exec cat "$bundle/$delete_response"
    ;;
esac
full "$@"
