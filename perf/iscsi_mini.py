#!/usr/bin/env python3
"""A tiny iSCSI initiator (RFC 7143) for the side-by-side benchmark, standard library only.

  iscsi_mini.py modesense URL            MODE SENSE(10) caching page (08h): WCE/RCD as the initiator
                                          sees them, current / changeable / default / saved values
  iscsi_mini.py trace-read URL [BLOCKS]   READ(10) of BLOCKS 512-byte blocks (default 8, 4 KiB):
                                          prints every PDU the target sends back for it
  iscsi_mini.py hold URL N --ready FILE  log in N idle sessions, write FILE once all are up, answer
                                          NOP-In pings and keep them until SIGTERM/SIGINT

URL is libiscsi's form: iscsi://HOST:PORT/TARGET-IQN/LUN.
Login goes straight to the operational stage (CSG=1, NSG=3, T=1): no authentication.
"""
import argparse, os, re, selectors, signal, socket, struct, sys, time

INITIATOR = "iqn.2026-11.org.bench:mini"


def parse_url(url):
    m = re.match(r"iscsi://([^:/]+):(\d+)/([^/]+)/(\d+)$", url)
    if not m:
        sys.exit("bad URL %r (want iscsi://HOST:PORT/IQN/LUN)" % url)
    return m.group(1), int(m.group(2)), m.group(3), int(m.group(4))


def pad4(b):
    return b + b"\0" * (-len(b) % 4)


def text_kv(pairs):
    return b"".join(("%s=%s" % kv).encode() + b"\0" for kv in pairs)


def parse_kv(data):
    out = {}
    for item in data.split(b"\0"):
        if b"=" in item:
            k, v = item.split(b"=", 1)
            out[k.decode()] = v.decode()
    return out


def lun_field(lun):
    # SAM single-level LUN: peripheral (lun < 256) or flat space addressing
    if lun < 256:
        return struct.pack(">BB6x", 0, lun)
    return struct.pack(">H6x", 0x4000 | lun)


class Session:
    def __init__(self, host, port, target, lun, isid_n):
        self.lun = lun
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.cmdsn = 1
        self.expstatsn = 0
        self.itt = 1
        self.isid = struct.pack(">BBHH", 0x80, 0x12, 0x3456, isid_n & 0xFFFF)  # random-qualifier ISID
        self.login(target)

    # ---- PDU I/O -------------------------------------------------------------------------
    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("target closed the connection")
            buf += chunk
        return buf

    def recv_pdu(self):
        bhs = self.recv_exact(48)
        ahs_len = bhs[4] * 4
        dlen = int.from_bytes(bhs[5:8], "big")
        rest = self.recv_exact(ahs_len + dlen + (-dlen % 4))
        return bhs, rest[ahs_len:ahs_len + dlen]

    def send_pdu(self, bhs, data=b""):
        assert len(bhs) == 48
        bhs = bytearray(bhs)
        bhs[5:8] = len(data).to_bytes(3, "big")
        self.sock.sendall(bytes(bhs) + pad4(data))

    # ---- login (operational stage only) ---------------------------------------------------
    def login(self, target):
        keys = [("InitiatorName", INITIATOR), ("SessionType", "Normal"), ("TargetName", target),
                ("HeaderDigest", "None"), ("DataDigest", "None"), ("ErrorRecoveryLevel", "0"),
                ("InitialR2T", "Yes"), ("ImmediateData", "Yes"), ("MaxConnections", "1"),
                ("MaxRecvDataSegmentLength", "262144"), ("MaxBurstLength", "262144"),
                ("FirstBurstLength", "65536"), ("DefaultTime2Wait", "2"), ("DefaultTime2Retain", "0"),
                ("MaxOutstandingR2T", "1"), ("DataPDUInOrder", "Yes"), ("DataSequenceInOrder", "Yes")]
        data = text_kv(keys)
        tsih = 0
        for _ in range(8):
            # opcode 03h immediate; T=1, CSG=1 (operational), NSG=3 (full feature)
            bhs = struct.pack(">BBBB4x6sHIHxxII16x", 0x43, 0x80 | (1 << 2) | 3, 0, 0, self.isid, tsih,
                              self.itt, 0, self.cmdsn, self.expstatsn)
            self.send_pdu(bhs, data)
            rbhs, rdata = self.recv_pdu()
            if rbhs[0] & 0x3F != 0x23:
                raise ConnectionError("expected Login Response, got opcode %02xh" % (rbhs[0] & 0x3F))
            status_class, status_detail = rbhs[36], rbhs[37]
            if status_class != 0:
                raise ConnectionError("login rejected: class %d detail %d (%s)"
                                      % (status_class, status_detail, parse_kv(rdata)))
            tsih = struct.unpack(">H", rbhs[14:16])[0]
            self.expstatsn = struct.unpack(">I", rbhs[24:28])[0] + 1
            self.cmdsn = struct.unpack(">I", rbhs[28:32])[0]  # ExpCmdSN
            self.negotiated = parse_kv(rdata)
            transit, nsg = rbhs[1] & 0x80, rbhs[1] & 0x03
            if transit and nsg == 3:
                self.tsih = tsih
                return
            data = b""  # target wants another exchange: offer nothing new, ask to transit again
        raise ConnectionError("login did not reach full feature phase")

    # ---- commands ---------------------------------------------------------------------------
    def scsi_read(self, cdb, alloc):
        """A SCSI command with a Data-In phase; returns (status, data, sense)."""
        self.itt += 1
        itt = self.itt
        bhs = struct.pack(">BBxx4x8sII II16s", 0x01, 0x80 | 0x40 | 0x01, lun_field(self.lun), itt, alloc,
                          self.cmdsn, self.expstatsn, cdb.ljust(16, b"\0"))
        self.cmdsn += 1
        self.send_pdu(bhs)
        data, status, sense = bytearray(), None, b""
        self.trace = []
        while status is None:
            rbhs, rdata = self.recv_pdu()
            self.trace.append((rbhs, len(rdata)))
            op = rbhs[0] & 0x3F
            if op == 0x20:  # NOP-In
                self.answer_nop(rbhs, rdata)
                continue
            if struct.unpack(">I", rbhs[16:20])[0] != itt:
                continue
            self.expstatsn = struct.unpack(">I", rbhs[24:28])[0] + 1 if op == 0x21 or rbhs[1] & 1 else self.expstatsn
            if op == 0x25:  # Data-In
                off = struct.unpack(">I", rbhs[40:44])[0]
                data[off:off + len(rdata)] = rdata
                if rbhs[1] & 0x01:  # S: status in this PDU
                    status = rbhs[3]
            elif op == 0x21:  # SCSI Response
                status = rbhs[3]
                if rdata:
                    sl = struct.unpack(">H", rdata[:2])[0]
                    sense = rdata[2:2 + sl]
            else:
                raise ConnectionError("unexpected opcode %02xh" % op)
        return status, bytes(data), sense

    def answer_nop(self, rbhs, rdata):
        ttt = struct.unpack(">I", rbhs[20:24])[0]
        self.expstatsn = struct.unpack(">I", rbhs[24:28])[0] + (0 if ttt != 0xFFFFFFFF else 0)
        if ttt == 0xFFFFFFFF:
            return  # unsolicited, no answer wanted
        # NOP-Out, immediate, ITT=ffffffffh, echoing TTT and LUN
        bhs = struct.pack(">BBxx4x8sII II16x", 0x40, 0x80, rbhs[8:16], 0xFFFFFFFF, ttt, self.cmdsn,
                          self.expstatsn)
        self.send_pdu(bhs, rdata)

    def pump(self):
        """Handle whatever arrived on an idle session (NOP-In pings, async messages)."""
        rbhs, rdata = self.recv_pdu()
        op = rbhs[0] & 0x3F
        if op == 0x20:
            self.answer_nop(rbhs, rdata)
        elif op == 0x32:  # Async Message: the target asks us to go; just close
            raise ConnectionError("async message %d" % rbhs[36])

    def logout(self):
        try:
            self.itt += 1
            bhs = struct.pack(">BBxx4x8xI4xII16x", 0x46, 0x80, self.itt, self.cmdsn, self.expstatsn)
            self.send_pdu(bhs)
            self.sock.settimeout(2)
            self.recv_pdu()
        except (OSError, ConnectionError):
            pass
        self.sock.close()


def mode_sense_caching(url):
    host, port, target, lun = parse_url(url)
    s = Session(host, port, target, lun, os.getpid())
    out = {}
    for pc, name in ((0, "current"), (1, "changeable"), (2, "default"), (3, "saved")):
        cdb = bytes([0x5A, 0x08, (pc << 6) | 0x08, 0, 0, 0, 0, 0, 255, 0])  # DBD=1, page 08h
        for _ in range(4):  # the first command of a session may meet a Unit Attention (key 6)
            status, data, sense = s.scsi_read(cdb, 255)
            if not (status == 2 and len(sense) > 2 and sense[2] & 0x0F == 6):
                break
        if status != 0:
            out[name] = "CHECK CONDITION (sense %s)" % sense[:18].hex()
            continue
        bdl = struct.unpack(">H", data[6:8])[0]
        page = data[8 + bdl:]
        if len(page) < 3 or page[0] & 0x3F != 0x08:
            out[name] = "no caching page (%s)" % data.hex()
            continue
        out[name] = "WCE=%d RCD=%d" % ((page[2] >> 2) & 1, page[2] & 1)
    s.logout()
    return out


def trace_read(url, blocks):
    host, port, target, lun = parse_url(url)
    s = Session(host, port, target, lun, os.getpid())
    names = {0x20: "NOP-In", 0x21: "SCSI Response", 0x25: "SCSI Data-In", 0x31: "R2T"}
    for attempt in range(3):
        cdb = struct.pack(">BBIBHB", 0x28, 0, 0, 0, blocks, 0)  # READ(10) LBA 0
        status, data, sense = s.scsi_read(cdb, blocks * 512)
        if status == 0:
            break
    for rbhs, dlen in s.trace:
        op = rbhs[0] & 0x3F
        print("%-14s flags %02xh (F=%d S=%d) data segment %d bytes"
              % (names.get(op, "%02xh" % op), rbhs[1], rbhs[1] >> 7, rbhs[1] & 1, dlen))
    print("status %02xh, %d bytes read, %d PDUs for one READ" % (status, len(data), len(s.trace)))
    s.logout()


def hold(url, n, ready):
    host, port, target, lun = parse_url(url)
    sessions = []
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    signal.signal(signal.SIGINT, lambda *a: stop.append(1))
    for i in range(n):
        sessions.append(Session(host, port, target, lun, i + 1))
    sel = selectors.DefaultSelector()
    for s in sessions:
        s.sock.settimeout(None)
        sel.register(s.sock, selectors.EVENT_READ, s)
    with open(ready, "w") as f:
        f.write("%d\n" % len(sessions))
    lost = 0
    while not stop:
        for key, _ in sel.select(timeout=0.5):
            try:
                key.data.pump()
            except (OSError, ConnectionError):
                sel.unregister(key.fileobj)
                lost += 1
    for s in sessions:
        s.logout()
    if lost:
        print("hold: %d sessions were closed by the target" % lost, file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("modesense")
    m.add_argument("url")
    t = sub.add_parser("trace-read")
    t.add_argument("url")
    t.add_argument("blocks", type=int, nargs="?", default=8)
    h = sub.add_parser("hold")
    h.add_argument("url")
    h.add_argument("n", type=int)
    h.add_argument("--ready", required=True)
    a = p.parse_args()
    if a.cmd == "modesense":
        for k, v in mode_sense_caching(a.url).items():
            print("%-10s %s" % (k, v))
    elif a.cmd == "trace-read":
        trace_read(a.url, a.blocks)
    else:
        hold(a.url, a.n, a.ready)


if __name__ == "__main__":
    main()
