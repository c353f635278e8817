#!/bin/bash
# Guest script for `../shared/lab/lab run tests/lab/pr-isid.sh` (one guest, open-iscsi):
# does open-iscsi keep its ISID across logout and login, and so its I_T nexus and its
# persistent reservation registration? And does an APTPL registration survive a SIGKILL of the
# target (the initiator reconnects on its own)?
# Prints "ISID-KEPT=yes|no", "APTPL-AFTER-KILL=yes|no" and "ISID-KEPT-ON-RECOVERY=yes|no"; exits 0
# when every step ran and the target kept the APTPL registrations.
#
# Found with Debian's open-iscsi (2026-11-26): ISID-KEPT=no. iscsid builds the ISID from its
# session number (0x00023d000001 at the first login, 0x00023d000002 after logout and login), so
# a logged-out-and-in host is a new I_T nexus: its old registration stays (SPC-4: until cleared
# or preempted) and it must register again (fence_scsi and mpathpersist do, with REGISTER AND
# IGNORE EXISTING KEY). Session recovery after a target restart keeps the ISID
# (ISID-KEPT-ON-RECOVERY=yes), and APTPL registrations survive a SIGKILL (APTPL-AFTER-KILL=yes).
set -uo pipefail
. /lab/env   # PORTAL and IQN, written by the lab
NODE=$(hostname)
fail() { echo "FAIL: $*"; exit 1; }
step() { echo; echo "=== [$(cut -d' ' -f1 /proc/uptime)s] $*"; }

step "iscsid"
modprobe -a iscsi_tcp sd_mod sg || fail modprobe
echo "InitiatorName=iqn.2026-11.org.lab:$NODE" > /etc/iscsi/initiatorname.iscsi
mkdir -p /run/lock/iscsi
iscsid || fail iscsid
sleep 1
iscsiadm -m node -o new -T $IQN -p $PORTAL >/dev/null || fail "node record"

disk() {
  local dev=
  for _ in $(seq 1 100); do
    dev=$(iscsiadm -m session -P3 2>/dev/null | awk '/Attached scsi disk/{print $4; exit}')
    [ -n "$dev" ] && [ -b /dev/$dev ] && { echo /dev/$dev; return 0; }
    sleep 0.2
  done
  return 1
}
# The initiator port of every registration, from READ FULL STATUS (the TransportID).
ports() { sg_persist --in --read-full-status "$1" 2>/dev/null | grep -io 'iqn[^ ]*,i,0x[0-9a-f]*' | sort -u; }

step "login 1, register with APTPL"
iscsiadm -m node -T $IQN -p $PORTAL --login || fail login
DEV=$(disk) || fail "no disk after login"
sg_persist --out --register --param-sark=0xabc1 --param-aptpl "$DEV" || fail register
sg_persist --in --read-full-status "$DEV" || fail read-full-status
P1=$(ports "$DEV")
echo "initiator port at login 1: $P1"

step "logout, login 2"
iscsiadm -m node -T $IQN -p $PORTAL --logout || fail logout
iscsiadm -m node -T $IQN -p $PORTAL --login || fail "login 2"
DEV=$(disk) || fail "no disk after login 2"
# Changing the key needs the registration of this very I_T nexus: it works only if the ISID
# (and so the initiator port name) is the same as at login 1.
if sg_persist --out --register --param-rk=0xabc1 --param-sark=0xabc2 --param-aptpl "$DEV"; then
  echo "ISID-KEPT=yes"
else
  echo "ISID-KEPT=no"
  sg_persist --out --register-ignore --param-sark=0xabc2 --param-aptpl "$DEV" || fail "register 2"
fi
sg_persist --in --read-full-status "$DEV"
echo "initiator ports registered after login 2: $(ports "$DEV" | tr '\n' ' ')"

step "SIGKILL of the target and restart"
echo kill-restart > /shared/host-request
for _ in $(seq 1 600); do [ -f /shared/host-done ] && break; sleep 0.1; done
[ -f /shared/host-done ] || fail "the host did not restart the target"
# open-iscsi reconnects by itself (session recovery); wait until I/O works again.
for _ in $(seq 1 100); do sg_turs "$DEV" >/dev/null 2>&1 && break; sleep 0.3; done
sg_persist --in --read-keys "$DEV" || fail "read keys after restart"
if sg_persist --in --read-keys "$DEV" | grep -qi abc2; then
  echo "APTPL-AFTER-KILL=yes"
else
  echo "APTPL-AFTER-KILL=no"
  fail "the APTPL registration did not survive SIGKILL of the target"
fi
sg_persist --in --report-capabilities "$DEV"
# After the target came back, open-iscsi recovered the session: if it kept the ISID of login 2,
# the registration still belongs to it and the key can be changed from it.
if sg_persist --out --register --param-rk=0xabc2 --param-sark=0xabc3 --param-aptpl "$DEV"; then
  echo "ISID-KEPT-ON-RECOVERY=yes"
else
  echo "ISID-KEPT-ON-RECOVERY=no"
  fail "the recovered session lost its registration"
fi
echo "initiator ports registered after recovery: $(ports "$DEV" | tr '\n' ' ')"

step "clean up"
# The registration of login 1's nexus is stale (that I_T nexus never comes back): CLEAR ends
# every registration, as an administrator would.
sg_persist --out --clear --param-rk=0xabc3 "$DEV" || true
sg_persist --in --read-keys "$DEV"
iscsiadm -m node -T $IQN -p $PORTAL --logout
echo "PR-ISID DONE"
