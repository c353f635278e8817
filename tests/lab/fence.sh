#!/bin/bash
# Guest script for `../shared/lab/lab run tests/lab/fence.sh 2`: the fence_scsi sequence from two
# real Linux initiators (open-iscsi, sg_persist), with a SIGKILL of the target in the middle.
#   both:  REGISTER AND IGNORE EXISTING KEY with APTPL
#   node1: RESERVE Write Exclusive Registrants Only
#   node2: starts a long stream of O_DIRECT writes
#   node1: PREEMPT AND ABORT node2's key while those writes are in flight
#   node2: the in-flight writes fail, new writes fail (RESERVATION CONFLICT), reads still work
#   host:  SIGKILL and restart of the target (the guests' sessions recover)
#   both:  the reservation and node1's registration came back (APTPL); node2 is still fenced
# Coordination through marker files in the shared 9p folder /shared.
set -uo pipefail
. /lab/env   # PORTAL and IQN, written by the lab
NODE=$(hostname); N=${NODE#node}; OTHER=node$((3-N))
KEY=0xfe00$N
fail() { echo "FAIL($NODE): $*"; touch /shared/abort; exit 1; }
step() { echo; echo "=== [$(cut -d' ' -f1 /proc/uptime)s] $NODE: $*"; }
waitfor() { # waitfor MARKER [timeout_s]
  local t=${2:-300}; for i in $(seq $((t*5))); do
    [ -e /shared/$1 ] && return 0; [ -e /shared/abort ] && fail "other node aborted"; sleep 0.2; done
  fail "timeout waiting for $1"; }
write_one() { dd if=/dev/urandom of=$DEV bs=4k count=1 seek=$1 oflag=direct status=none 2>>/tmp/dd.err; }
read_one() { dd if=$DEV of=/dev/null bs=4k count=1 skip=$1 iflag=direct status=none 2>>/tmp/dd.err; }
recovered() { for i in $(seq 150); do sg_turs $DEV >/dev/null 2>&1 && return 0; sleep 0.2; done; return 1; }

step "iscsid + login"
modprobe -a iscsi_tcp sd_mod sg || fail modprobe
echo "InitiatorName=iqn.2026-11.org.lab:$NODE" > /etc/iscsi/initiatorname.iscsi
mkdir -p /run/lock/iscsi; iscsid || fail iscsid; sleep 1
iscsiadm -m node -o new -T $IQN -p $PORTAL >/dev/null || fail "node record"
iscsiadm -m node -T $IQN -p $PORTAL --login || fail login
for i in $(seq 50); do
  DEV=$(iscsiadm -m session -P3 2>/dev/null | awk '/Attached scsi disk/{print $4; exit}')
  [ -n "$DEV" ] && [ -b /dev/$DEV ] && break; sleep 0.2; done
[ -b "/dev/$DEV" ] || fail "no disk"; DEV=/dev/$DEV; echo "disk $DEV"

step "REGISTER AND IGNORE EXISTING KEY $KEY, APTPL"
sg_persist -n --out --register-ignore --param-sark=$KEY --param-aptpl $DEV || fail register
touch /shared/$NODE-registered; waitfor $OTHER-registered

if [ $N = 1 ]; then
  step "RESERVE Write Exclusive, Registrants Only"
  sg_persist -n --out --reserve --param-rk=$KEY --prout-type=5 $DEV || fail reserve
  touch /shared/reserved
  waitfor node2-writing
  sleep 1
  step "PREEMPT AND ABORT node2 (key 0xfe002) while its writes are in flight"
  sg_persist -n --out --preempt-abort --param-rk=$KEY --param-sark=0xfe002 --prout-type=5 $DEV || fail preempt-abort
  sg_persist -n --in --read-keys $DEV
  sg_persist -n --in --read-reservation $DEV
  touch /shared/fenced
  waitfor node2-checked
  write_one 10 || fail "the holder cannot write"
  step "SIGKILL of the target, restart"
  echo kill-restart > /shared/host-request
  for i in $(seq 600); do [ -f /shared/host-done ] && break; sleep 0.1; done
  [ -f /shared/host-done ] || fail "the host did not restart the target"
  recovered || fail "no I/O after the target restarted"
  keys=$(sg_persist -n --in --read-keys $DEV)
  echo "$keys"
  echo "$keys" | grep -qi fe001 || fail "node1's registration is gone after SIGKILL (APTPL)"
  echo "$keys" | grep -qi fe002 && fail "node2's preempted registration came back"
  sg_persist -n --in --read-reservation $DEV | tee /tmp/res
  grep -qi "fe001" /tmp/res || fail "the reservation is gone after SIGKILL (APTPL)"
  write_one 11 || fail "the holder cannot write after the restart"
  touch /shared/restarted
  waitfor node2-after
  step "clean up"
  sg_persist -n --out --clear --param-rk=$KEY $DEV || fail clear
  echo "FENCE-OK node1"
else
  waitfor reserved
  step "a stream of writes, then fenced in the middle of it"
  dd if=/dev/urandom of=/tmp/blob bs=1M count=8 status=none
  ( for i in $(seq 2000); do dd if=/tmp/blob of=$DEV bs=1M count=8 seek=$((16 + (i % 64) * 8)) oflag=direct status=none || exit 1; done; exit 0 ) 2>/tmp/stream.err &
  STREAM=$!
  sleep 1; kill -0 $STREAM 2>/dev/null || fail "the writes stopped before the fence"
  touch /shared/node2-writing
  waitfor fenced
  for i in $(seq 100); do kill -0 $STREAM 2>/dev/null || break; sleep 0.2; done
  kill -0 $STREAM 2>/dev/null && { kill $STREAM; fail "the write stream still runs 20 s after PREEMPT AND ABORT"; }
  wait $STREAM && fail "the write stream ended without an error although it was fenced"
  echo "in-flight writes failed: $(tail -n 1 /tmp/stream.err)"
  dmesg | grep -i -m3 -E 'reservation conflict|abort' || true
  write_one 20 && fail "a write succeeded after PREEMPT AND ABORT"
  read_one 20 || fail "a read failed: WERO lets everyone read"
  echo "fenced: writes rejected, reads work"
  touch /shared/node2-checked
  waitfor restarted 300
  recovered || fail "no I/O after the target restarted"
  write_one 21 && fail "a write succeeded after the restart: the fence was lost"
  read_one 21 || fail "a read failed after the restart"
  echo "still fenced after SIGKILL and restart"
  touch /shared/node2-after
  echo "FENCE-OK node2"
fi
iscsiadm -m node -T $IQN -p $PORTAL --logout >/dev/null 2>&1
exit 0
