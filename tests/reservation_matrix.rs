//! Persistent reservations (SPC-4 §5.9, PERSISTENT RESERVE IN §6.15, PERSISTENT RESERVE OUT
//! §6.16) through a real `ringsand` over real iSCSI sessions, three or more initiators per test
//! (distinct initiator names, or one name with distinct ISIDs where that is the point). What
//! libiscsi's suite leaves out:
//!
//! - the access rules of every reservation type (SPC-4 §5.9.1 conflict tables, SBC-3) for the
//!   holder, another registrant and a non-registrant, with READ RESERVATION and READ FULL
//!   STATUS saying who holds what;
//! - every PERSISTENT RESERVE OUT service action, with the unit attentions each one raises on
//!   the other I_T nexuses (checked exactly: the helpers never swallow one silently) and the
//!   PRgeneration it does or does not count;
//! - PREEMPT AND ABORT of a host whose write is stalled waiting for its data (TASK ABORTED,
//!   TAS=1), REGISTER AND MOVE and its errors, APTPL across a SIGKILL, SPEC_I_PT with both
//!   iSCSI TransportID formats, ALL_TG_PT;
//! - READ FULL STATUS parsed descriptor by descriptor, TransportIDs included;
//! - malformed commands over the wire: parameter list lengths, reserved service actions, types
//!   and scopes, TransportIDs that do not parse.
//!
//! The target has one target port, `{IQN},t,0x0001`: RELATIVE TARGET PORT IDENTIFIER 1.

mod common;

use common::initiator::{read10, write10, Conn, LoginOptions, ScsiResult};
use common::{Daemon, IQN};
use ringsan::iscsi::pdu::{encode_lun, parse_sense_segment, DataOut, R2t, Response};
use ringsan::scsi::pr::{PrOut, PrType, TransportId};
use PrType::*;

// ---------------------------------------------------------------------------------------------
// Statuses, sense data, keys and initiators.

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// GOOD (00h).
    Good,
    /// RESERVATION CONFLICT (18h).
    Conflict,
    /// CHECK CONDITION (02h) with (sense key, ASC, ASCQ).
    Check(u8, u8, u8),
    /// TASK ABORTED (40h).
    Aborted,
}
use Outcome::*;

const INVALID_FIELD_IN_CDB: Outcome = Check(0x5, 0x24, 0x00);
const INVALID_FIELD_IN_PARAMETER_LIST: Outcome = Check(0x5, 0x26, 0x00);
const PARAMETER_LIST_LENGTH_ERROR: Outcome = Check(0x5, 0x1A, 0x00);
const INVALID_RELEASE_OF_PERSISTENT_RESERVATION: Outcome = Check(0x5, 0x26, 0x04);

/// A unit attention condition: (sense key, ASC, ASCQ).
type Ua = (u8, u8, u8);
const POWER_ON: Ua = (0x6, 0x29, 0x00);
const RESERVATIONS_PREEMPTED: Ua = (0x6, 0x2A, 0x03);
const RESERVATIONS_RELEASED: Ua = (0x6, 0x2A, 0x04);
const REGISTRATIONS_PREEMPTED: Ua = (0x6, 0x2A, 0x05);

const NO_UA: Vec<Ua> = Vec::new();

/// Reservation keys, all 64 bits used.
const KA: u64 = 0xAAAA_0000_0000_000A;
const KB: u64 = 0xBBBB_0000_0000_000B;
const KC: u64 = 0xCCCC_0000_0000_000C;
const KD: u64 = 0xDDDD_0000_0000_000D;

/// Initiator names of different lengths, so their TransportIDs need 1 to 4 bytes of padding.
const NAMES: [&str; 5] = [
    "iqn.2026-11.io.ringsan:host-a",
    "iqn.2026-11.io.ringsan:host-bb",
    "iqn.2026-11.io.ringsan:host-ccc",
    "iqn.2026-11.io.ringsan:host-dddd",
    "iqn.2026-11.io.ringsan:host-eeeee",
];

/// The ISID of the first session of each initiator (hex letters included: port names carry the
/// ISID in lowercase hexadecimal).
fn isid(host: usize) -> [u8; 6] {
    [0x40, 0x00, 0x12, 0x34, 0xAB, host as u8]
}

/// The ISID of a second session of the same initiator.
fn other_isid(host: usize) -> [u8; 6] {
    [0x80, 0x00, 0x00, 0x00, 0xCD, host as u8]
}

const TUR: [u8; 6] = [0; 6];
const PROUT: u8 = 0x5F;
const PRIN: u8 = 0x5E;
const READ_KEYS: u8 = 0x00;
const READ_RESERVATION: u8 = 0x01;
const REPORT_CAPABILITIES: u8 = 0x02;
const READ_FULL_STATUS: u8 = 0x03;

fn outcome(r: &ScsiResult) -> Outcome {
    match r.status {
        0x00 => Good,
        0x18 => Conflict,
        0x40 => Aborted,
        0x02 => {
            let (k, asc, ascq) = r.sense_key();
            Check(k, asc, ascq)
        }
        s => panic!("unexpected status {s:#04x}"),
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

// ---------------------------------------------------------------------------------------------
// READ FULL STATUS descriptors.

/// One full status descriptor (SPC-4 §6.15.5), the fields the standard defines.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Registration {
    /// The TransportID's text: `name,i,0x<ISID>` (format 01b) or `name` (format 00b).
    port: String,
    /// The TransportID's FORMAT CODE.
    format: u8,
    key: u64,
    all_tg_pt: bool,
    /// SCOPE and TYPE, when R_HOLDER is set (they are not defined otherwise).
    holds: Option<u8>,
    /// RELATIVE TARGET PORT IDENTIFIER, when ALL_TG_PT is zero (not defined otherwise).
    relative_port: Option<u16>,
}

impl Registration {
    /// What a registration of initiator port `port` through target port 1 looks like.
    fn of(port: String, key: u64) -> Registration {
        Registration {
            port,
            format: 1,
            key,
            all_tg_pt: false,
            holds: None,
            relative_port: Some(1),
        }
    }

    /// ... holding a LU_SCOPE reservation of type `t`.
    fn holding(mut self, t: PrType) -> Registration {
        self.holds = Some(t.code());
        self
    }

    /// ... made with ALL_TG_PT=1.
    fn all_tg_pt(mut self) -> Registration {
        self.all_tg_pt = true;
        self.relative_port = None;
        self
    }

    /// ... of every port of initiator `name` (TransportID format 00b).
    fn device(name: &str, key: u64) -> Registration {
        Registration {
            format: 0,
            ..Registration::of(name.to_owned(), key)
        }
    }
}

/// Parses an iSCSI TransportID (SPC-4 §7.6.4.6); returns (format, text, bytes used) and checks
/// its layout: PROTOCOL IDENTIFIER 5h, ADDITIONAL LENGTH a multiple of 4 and at least 20, the
/// text null terminated and null padded.
fn parse_transport_id(b: &[u8]) -> (u8, String, usize) {
    assert_eq!(b[0] & 0x0F, 0x5, "PROTOCOL IDENTIFIER iSCSI: {b:02x?}");
    assert_eq!(b[0] & 0x30, 0, "reserved bits of byte 0");
    assert_eq!(b[1], 0, "reserved byte 1");
    let additional = usize::from(u16::from_be_bytes([b[2], b[3]]));
    assert!(
        additional % 4 == 0 && additional >= 20,
        "ADDITIONAL LENGTH {additional}"
    );
    let body = &b[4..4 + additional];
    let end = body
        .iter()
        .position(|&c| c == 0)
        .expect("the name is null terminated");
    assert!(
        body[end..].iter().all(|&c| c == 0),
        "null padded: {body:02x?}"
    );
    assert!(
        body.len() - end <= 4 || additional == 20,
        "at most 4 bytes of null termination and padding past the name: {body:02x?}"
    );
    let text = String::from_utf8(body[..end].to_vec()).expect("UTF-8 name");
    (b[0] >> 6, text, 4 + additional)
}

/// Parses READ FULL STATUS parameter data: PRgeneration and the descriptors, sorted.
fn parse_full_status(d: &[u8]) -> (u32, Vec<Registration>) {
    let len = be32(d, 4) as usize;
    assert_eq!(d.len(), 8 + len, "ADDITIONAL LENGTH covers the descriptors");
    let mut out = Vec::new();
    let mut at = 8;
    while at < d.len() {
        let desc = &d[at..];
        assert_eq!(&desc[8..12], &[0; 4], "reserved bytes 8-11");
        assert_eq!(desc[12] & 0xFC, 0, "reserved bits of byte 12");
        assert_eq!(&desc[14..18], &[0; 4], "reserved bytes 14-17");
        let r_holder = desc[12] & 0x01 != 0;
        let all_tg_pt = desc[12] & 0x02 != 0;
        let tid_len = be32(desc, 20) as usize;
        let (format, port, used) = parse_transport_id(&desc[24..24 + tid_len]);
        assert_eq!(
            used, tid_len,
            "ADDITIONAL DESCRIPTOR LENGTH is the TransportID's"
        );
        out.push(Registration {
            port,
            format,
            key: be64(desc, 0),
            all_tg_pt,
            holds: r_holder.then_some(desc[13]),
            relative_port: (!all_tg_pt).then(|| u16::from_be_bytes([desc[18], desc[19]])),
        });
        at += 24 + tid_len;
    }
    out.sort();
    (be32(d, 0), out)
}

// ---------------------------------------------------------------------------------------------
// Hand-built PERSISTENT RESERVE OUT commands, for what `PrOut::encode` cannot produce.

/// A PERSISTENT RESERVE OUT CDB: SERVICE ACTION, SCOPE and TYPE, PARAMETER LIST LENGTH.
fn prout_cdb(sa: u8, scope_type: u8, len: usize) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = PROUT;
    c[1] = sa;
    c[2] = scope_type;
    c[5..9].copy_from_slice(&(len as u32).to_be_bytes());
    c
}

/// A basic parameter list (SPC-4 §6.16.3) with SPEC_I_PT=1 and `tids` as the TransportIDs,
/// `tid_len` as their TRANSPORTID PARAMETER DATA LENGTH.
fn spec_i_pt_params(sa_key: u64, tid_len: usize, tids: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p[20] = 0x08;
    p.extend_from_slice(&(tid_len as u32).to_be_bytes());
    p.extend_from_slice(tids);
    p
}

/// A TransportID with byte 0 `byte0` and `text`, null padded to ADDITIONAL LENGTH 20 or more.
fn raw_transport_id(byte0: u8, text: &[u8]) -> Vec<u8> {
    let body = (text.len() + 1).div_ceil(4).max(5) * 4;
    let mut t = vec![byte0, 0];
    t.extend_from_slice(&(body as u16).to_be_bytes());
    t.extend_from_slice(text);
    t.resize(4 + body, 0);
    t
}

// ---------------------------------------------------------------------------------------------
// Initiators.

/// One logged-in session: an I_T nexus.
struct Host {
    conn: Conn,
    name: String,
    isid: [u8; 6],
}

impl Host {
    /// Logs `name` in with ISID `isid` (no immediate data, InitialR2T=Yes: every write waits
    /// for an R2T, so one can be left stalled) and takes the POWER ON unit attention.
    fn login(d: &Daemon, name: &str, isid: [u8; 6]) -> Host {
        let mut conn = Conn::connect(d.addr);
        let mut o = LoginOptions::new(IQN);
        o.initiator = name.into();
        o.isid = isid;
        o.immediate_data = false;
        o.initial_r2t = true;
        conn.login(&o).unwrap();
        let mut h = Host {
            conn,
            name: name.into(),
            isid,
        };
        assert_eq!(h.unit_attentions(), vec![POWER_ON], "{}", h.port());
        h
    }

    /// The initiator port name: `name,i,0x<ISID>`.
    fn port(&self) -> String {
        let isid: String = self.isid.iter().map(|b| format!("{b:02x}")).collect();
        format!("{},i,0x{isid}", self.name)
    }

    /// A TransportID naming this initiator port (format 01b).
    fn tid(&self) -> TransportId {
        TransportId::port(&self.name, self.isid)
    }

    fn cmd(&mut self, cdb: &[u8], data_out: &[u8], read_len: u32) -> ScsiResult {
        self.conn.scsi(0, cdb, data_out, read_len).unwrap()
    }

    /// Takes every pending unit attention (TEST UNIT READY until GOOD), in order.
    fn unit_attentions(&mut self) -> Vec<Ua> {
        let mut out = Vec::new();
        for _ in 0..16 {
            let r = self.cmd(&TUR, &[], 0);
            match outcome(&r) {
                Good => return out,
                Check(0x6, asc, ascq) => out.push((0x6, asc, ascq)),
                other => panic!("TEST UNIT READY from {}: {other:?}", self.port()),
            }
        }
        panic!("unit attentions without end on {}", self.port());
    }

    fn prout(&mut self, op: &PrOut) -> Outcome {
        let (cdb, params) = op.encode();
        self.prout_raw(&cdb, &params)
    }

    fn prout_raw(&mut self, cdb: &[u8], params: &[u8]) -> Outcome {
        outcome(&self.cmd(cdb, params, 0))
    }

    /// PERSISTENT RESERVE IN with service action `sa` and ALLOCATION LENGTH `alloc`.
    fn prin_alloc(&mut self, sa: u8, alloc: u16) -> Vec<u8> {
        let mut cdb = [PRIN, sa, 0, 0, 0, 0, 0, 0, 0, 0];
        cdb[7..9].copy_from_slice(&alloc.to_be_bytes());
        let r = self.cmd(&cdb, &[], u32::from(alloc));
        assert_eq!(outcome(&r), Good, "PERSISTENT RESERVE IN {sa}");
        r.data
    }

    fn prin(&mut self, sa: u8) -> Vec<u8> {
        self.prin_alloc(sa, 0x4000)
    }

    /// READ KEYS: PRgeneration and the keys (sorted: SPC-4 names no order).
    fn read_keys(&mut self) -> (u32, Vec<u64>) {
        let d = self.prin(READ_KEYS);
        let len = be32(&d, 4) as usize;
        assert_eq!(d.len(), 8 + len);
        assert_eq!(len % 8, 0);
        let mut keys: Vec<u64> = (8..d.len()).step_by(8).map(|i| be64(&d, i)).collect();
        keys.sort();
        (be32(&d, 0), keys)
    }

    fn generation(&mut self) -> u32 {
        self.read_keys().0
    }

    /// The registered keys, sorted.
    fn keys(&mut self) -> Vec<u64> {
        self.read_keys().1
    }

    /// READ RESERVATION: the reservation's key and type, if there is one.
    fn reservation(&mut self) -> Option<(u64, u8)> {
        let d = self.prin(READ_RESERVATION);
        match be32(&d, 4) {
            0 => {
                assert_eq!(d.len(), 8);
                None
            }
            16 => {
                assert_eq!(d.len(), 24);
                assert_eq!(d[21] >> 4, 0, "LU_SCOPE");
                Some((be64(&d, 8), d[21] & 0x0F))
            }
            n => panic!("READ RESERVATION ADDITIONAL LENGTH {n}"),
        }
    }

    fn full_status(&mut self) -> Vec<Registration> {
        parse_full_status(&self.prin(READ_FULL_STATUS)).1
    }

    /// PTPL_A of REPORT CAPABILITIES.
    fn ptpl_active(&mut self) -> bool {
        let d = self.prin(REPORT_CAPABILITIES);
        assert_eq!(d[2] & 0x01, 0x01, "PTPL_C: the unit can persist");
        d[3] & 0x01 != 0
    }

    /// READ(10) of block 0.
    fn read(&mut self) -> Outcome {
        outcome(&self.cmd(&read10(0, 1), &[], 512))
    }

    /// WRITE(10) of block 1.
    fn write(&mut self) -> Outcome {
        outcome(&self.cmd(&write10(1, 1), &[0x5A; 512], 0))
    }

    /// (READ, WRITE).
    fn access(&mut self) -> (Outcome, Outcome) {
        (self.read(), self.write())
    }

    /// Sends a WRITE(10) of one block at `lba` and stops at the target's R2T, without sending
    /// the data: the task stays in the task set.
    fn start_write(&mut self, lba: u32) -> (u32, R2t) {
        let itt = self
            .conn
            .send_command(0, &write10(lba, 1), true, 512, &[])
            .unwrap();
        match self.conn.recv_response().unwrap().0 {
            Response::R2t(r) => (itt, r),
            other => panic!("expected an R2T, got {other:?}"),
        }
    }

    /// Sends the data of a write stalled by [`Host::start_write`]; its status.
    fn finish_write(&mut self, itt: u32, r2t: &R2t) -> Outcome {
        let d = DataOut {
            final_flag: true,
            data_len: 512,
            lun: encode_lun(0),
            itt,
            ttt: r2t.ttt,
            exp_statsn: self.conn.exp_statsn,
            data_sn: 0,
            buffer_offset: 0,
        };
        self.conn.send(&d.encode(), &[0xA5; 512]).unwrap();
        self.status_of(itt)
    }

    /// Reads the SCSI Response of task `itt`.
    fn status_of(&mut self, itt: u32) -> Outcome {
        match self.conn.recv_response().unwrap() {
            (Response::ScsiResponse(r), data) => {
                assert_eq!(r.itt, itt);
                self.conn.exp_statsn = r.statsn.wrapping_add(1);
                outcome(&ScsiResult {
                    status: r.status,
                    sense: parse_sense_segment(&data).unwrap().to_vec(),
                    ..ScsiResult::default()
                })
            }
            (other, _) => panic!("expected the status of task {itt:#x}, got {other:?}"),
        }
    }
}

/// Logs in initiators `NAMES[0..N]`, one session each.
fn hosts<const N: usize>(d: &Daemon) -> [Host; N] {
    std::array::from_fn(|i| Host::login(d, NAMES[i], isid(i)))
}

/// Registers `h` with `key` (REGISTER from an unregistered I_T nexus).
fn register(h: &mut Host, key: u64) {
    assert_eq!(h.prout(&PrOut::register(0, key)), Good, "{}", h.port());
}

/// The unit attentions pending on each of `hs`.
fn uas<const N: usize>(hs: [&mut Host; N]) -> [Vec<Ua>; N] {
    hs.map(|h| h.unit_attentions())
}

// ---------------------------------------------------------------------------------------------
// 1. Access per reservation type.

/// What an I_T nexus that does not hold the reservation may do.
#[derive(Debug, Clone, Copy)]
enum Access {
    Neither,
    ReadOnly,
    ReadWrite,
}
use Access::{Neither, ReadOnly, ReadWrite};

impl Access {
    /// The outcome of (READ, WRITE).
    fn expected(self) -> (Outcome, Outcome) {
        match self {
            Neither => (Conflict, Conflict),
            ReadOnly => (Good, Conflict),
            ReadWrite => (Good, Good),
        }
    }
}

/// READ and WRITE from a nexus that does not hold the reservation, per type (SPC-4 §5.9.1 and
/// the SBC-3 table of commands allowed in the presence of reservations): (type, a registrant,
/// a non-registrant).
const ACCESS_TABLE: [(PrType, Access, Access); 6] = [
    (WriteExclusive, ReadOnly, ReadOnly),
    (ExclusiveAccess, Neither, Neither),
    (WriteExclusiveRegistrantsOnly, ReadWrite, ReadOnly),
    (ExclusiveAccessRegistrantsOnly, ReadWrite, Neither),
    (WriteExclusiveAllRegistrants, ReadWrite, ReadOnly),
    (ExclusiveAccessAllRegistrants, ReadWrite, Neither),
];

/// Reserves type `t` from a holder and checks READ(10) and WRITE(10) from the holder, another
/// registrant and a non-registrant against [`ACCESS_TABLE`]; READ RESERVATION and READ FULL
/// STATUS; then RELEASE gives everyone access back and tells the other registrants
/// RESERVATIONS RELEASED, unless the type is WE or EA (SPC-4 §5.9.11.2).
fn check_access(t: PrType) {
    let &(_, registrant, stranger) = ACCESS_TABLE.iter().find(|row| row.0 == t).unwrap();
    let d = Daemon::start(&format!("pr-access-{}", t.code()));
    let [mut holder, mut other, mut outsider] = hosts(&d);
    register(&mut holder, KA);
    register(&mut other, KB);
    let all_registrants = matches!(
        t,
        WriteExclusiveAllRegistrants | ExclusiveAccessAllRegistrants
    );
    assert_eq!(holder.prout(&PrOut::reserve(KA, t)), Good);
    assert_eq!(uas([&mut holder, &mut other, &mut outsider]), [NO_UA; 3]);

    // SPC-4 §6.15.3: an all registrants reservation reports the RESERVATION KEY zero.
    let key = if all_registrants { 0 } else { KA };
    assert_eq!(outsider.reservation(), Some((key, t.code())));
    // SPC-4 §5.9.10: under an all registrants type every registrant holds it.
    let mut other_reg = Registration::of(other.port(), KB);
    if all_registrants {
        other_reg = other_reg.holding(t);
    }
    let mut expected = vec![Registration::of(holder.port(), KA).holding(t), other_reg];
    expected.sort();
    assert_eq!(outsider.full_status(), expected);

    for (h, who, access) in [
        (&mut holder, "holder", ReadWrite),
        (&mut other, "registrant", registrant),
        (&mut outsider, "non-registrant", stranger),
    ] {
        assert_eq!(h.access(), access.expected(), "{who} under type {t:?}");
    }

    assert_eq!(holder.prout(&PrOut::release(KA, t)), Good);
    assert_eq!(outsider.reservation(), None);
    let released = if matches!(t, WriteExclusive | ExclusiveAccess) {
        NO_UA
    } else {
        vec![RESERVATIONS_RELEASED]
    };
    assert_eq!(
        uas([&mut holder, &mut other, &mut outsider]),
        [NO_UA, released, NO_UA],
        "after RELEASE of type {t:?}"
    );
    for h in [&mut holder, &mut other, &mut outsider] {
        assert_eq!(h.access(), (Good, Good), "{} after RELEASE", h.port());
    }
}

#[test]
fn access_write_exclusive() {
    check_access(WriteExclusive);
}

#[test]
fn access_exclusive_access() {
    check_access(ExclusiveAccess);
}

#[test]
fn access_write_exclusive_registrants_only() {
    check_access(WriteExclusiveRegistrantsOnly);
}

#[test]
fn access_exclusive_access_registrants_only() {
    check_access(ExclusiveAccessRegistrantsOnly);
}

#[test]
fn access_write_exclusive_all_registrants() {
    check_access(WriteExclusiveAllRegistrants);
}

#[test]
fn access_exclusive_access_all_registrants() {
    check_access(ExclusiveAccessAllRegistrants);
}

// ---------------------------------------------------------------------------------------------
// 2. Service actions.

/// REGISTER (SPC-4 §5.9.7, "Register behaviors for a REGISTER service action") and REGISTER
/// AND IGNORE EXISTING KEY ("... for a REGISTER AND IGNORE EXISTING KEY service action").
#[test]
fn register_and_register_and_ignore_existing_key() {
    let d = Daemon::start("pr-register");
    let [mut a, mut b, mut c] = hosts(&d);
    let g = c.generation();
    assert_eq!(c.keys(), Vec::<u64>::new());

    // New key.
    assert_eq!(a.prout(&PrOut::register(0, KA)), Good);
    assert_eq!(c.read_keys(), (g + 1, vec![KA]));
    // Unregistered with a non-zero RESERVATION KEY: conflict.
    assert_eq!(b.prout(&PrOut::register(KB, KB)), Conflict);
    // Unregistered, both keys zero: nothing happens, GOOD, PRgeneration unchanged.
    assert_eq!(b.prout(&PrOut::register(0, 0)), Good);
    assert_eq!(c.read_keys(), (g + 1, vec![KA]));
    // Registered, wrong RESERVATION KEY (zero is wrong too): conflict, nothing changes.
    assert_eq!(a.prout(&PrOut::register(KB, KC)), Conflict);
    assert_eq!(a.prout(&PrOut::register(0, KC)), Conflict);
    assert_eq!(c.read_keys(), (g + 1, vec![KA]));
    // Change the key.
    assert_eq!(a.prout(&PrOut::register(KA, KD)), Good);
    assert_eq!(c.read_keys(), (g + 2, vec![KD]));

    // REGISTER AND IGNORE EXISTING KEY: registers whatever the RESERVATION KEY field says ...
    let mut riek = PrOut::register_ignore(KB);
    riek.key = 0x1234;
    assert_eq!(b.prout(&riek), Good);
    assert_eq!(c.read_keys(), (g + 3, vec![KB, KD]));
    // ... and replaces a registered key without knowing it.
    assert_eq!(a.prout(&PrOut::register_ignore(KA)), Good);
    assert_eq!(c.read_keys(), (g + 4, vec![KA, KB]));
    // Unregistered with a zero SERVICE ACTION RESERVATION KEY: nothing.
    assert_eq!(c.prout(&PrOut::register_ignore(0)), Good);
    assert_eq!(c.read_keys(), (g + 4, vec![KA, KB]));
    // Unregister with a zero SERVICE ACTION RESERVATION KEY.
    assert_eq!(b.prout(&PrOut::register_ignore(0)), Good);
    assert_eq!(c.read_keys(), (g + 5, vec![KA]));

    // REGISTER with SERVICE ACTION RESERVATION KEY zero unregisters.
    assert_eq!(a.prout(&PrOut::register(KA, 0)), Good);
    assert_eq!(c.read_keys(), (g + 6, vec![]));
    // Nobody's registration change is anybody else's unit attention.
    assert_eq!(uas([&mut a, &mut b, &mut c]), [NO_UA; 3]);
}

/// RESERVE (SPC-4 §5.9.9) and RELEASE (§5.9.11.2), and unregistering the holder (§5.9.11.3).
#[test]
fn reserve_and_release() {
    let d = Daemon::start("pr-reserve");
    let [mut a, mut b, mut c] = hosts(&d);
    register(&mut a, KA);
    register(&mut b, KB);
    let g = c.generation();

    // RELEASE with no reservation: GOOD, nothing.
    assert_eq!(a.prout(&PrOut::release(KA, WriteExclusive)), Good);
    assert_eq!(a.prout(&PrOut::reserve(KA, WriteExclusive)), Good);
    assert_eq!(c.reservation(), Some((KA, WriteExclusive.code())));
    // The holder again, same type and scope: GOOD, nothing changes.
    assert_eq!(a.prout(&PrOut::reserve(KA, WriteExclusive)), Good);
    // The holder with another type, another registrant, an unregistered nexus, a wrong key:
    // conflict.
    assert_eq!(a.prout(&PrOut::reserve(KA, ExclusiveAccess)), Conflict);
    assert_eq!(b.prout(&PrOut::reserve(KB, WriteExclusive)), Conflict);
    assert_eq!(c.prout(&PrOut::reserve(0, WriteExclusive)), Conflict);
    assert_eq!(a.prout(&PrOut::reserve(KB, WriteExclusive)), Conflict);
    assert_eq!(c.reservation(), Some((KA, WriteExclusive.code())));

    // RELEASE from a registrant that does not hold it: GOOD, nothing happens.
    assert_eq!(b.prout(&PrOut::release(KB, WriteExclusive)), Good);
    // From an unregistered nexus or with a wrong key: conflict.
    assert_eq!(c.prout(&PrOut::release(0, WriteExclusive)), Conflict);
    assert_eq!(a.prout(&PrOut::release(KB, WriteExclusive)), Conflict);
    // From the holder with another type: INVALID RELEASE OF PERSISTENT RESERVATION.
    assert_eq!(
        a.prout(&PrOut::release(KA, ExclusiveAccess)),
        INVALID_RELEASE_OF_PERSISTENT_RESERVATION
    );
    assert_eq!(c.reservation(), Some((KA, WriteExclusive.code())));
    // The holder releases; WE: no unit attention for anyone.
    assert_eq!(a.prout(&PrOut::release(KA, WriteExclusive)), Good);
    assert_eq!(c.reservation(), None);
    assert_eq!(uas([&mut a, &mut b, &mut c]), [NO_UA; 3]);

    // WERO: releasing it tells the other registrants, not the non-registrant.
    let t = WriteExclusiveRegistrantsOnly;
    assert_eq!(a.prout(&PrOut::reserve(KA, t)), Good);
    assert_eq!(a.prout(&PrOut::release(KA, t)), Good);
    assert_eq!(
        uas([&mut a, &mut b, &mut c]),
        [NO_UA, vec![RESERVATIONS_RELEASED], NO_UA]
    );
    // Unregistering the holder of a registrants only reservation releases it, with the same
    // unit attention (SPC-4 §5.9.11.3).
    assert_eq!(a.prout(&PrOut::reserve(KA, t)), Good);
    assert_eq!(a.prout(&PrOut::register(KA, 0)), Good);
    assert_eq!(c.reservation(), None);
    assert_eq!(
        uas([&mut a, &mut b, &mut c]),
        [NO_UA, vec![RESERVATIONS_RELEASED], NO_UA]
    );
    // RESERVE and RELEASE never counted; the unregistration did.
    assert_eq!(c.read_keys(), (g + 1, vec![KB]));
}

/// CLEAR (SPC-4 §5.9.11.6): every registration and the reservation go; every other registrant
/// gets RESERVATIONS PREEMPTED.
#[test]
fn clear() {
    let d = Daemon::start("pr-clear");
    let [mut a, mut b, mut c, mut outsider] = hosts(&d);
    register(&mut a, KA);
    register(&mut b, KB);
    register(&mut c, KC);
    assert_eq!(a.prout(&PrOut::reserve(KA, ExclusiveAccess)), Good);
    let g = outsider.generation();

    assert_eq!(outsider.prout(&PrOut::clear(0)), Conflict);
    assert_eq!(b.prout(&PrOut::clear(KC)), Conflict);
    assert_eq!(outsider.read_keys(), (g, vec![KA, KB, KC]));

    assert_eq!(b.prout(&PrOut::clear(KB)), Good);
    assert_eq!(outsider.read_keys(), (g + 1, vec![]));
    assert_eq!(outsider.reservation(), None);
    assert_eq!(
        uas([&mut a, &mut b, &mut c, &mut outsider]),
        [
            vec![RESERVATIONS_PREEMPTED],
            NO_UA,
            vec![RESERVATIONS_PREEMPTED],
            NO_UA
        ]
    );
    // Registrations are gone too: the old keys no longer work.
    assert_eq!(a.prout(&PrOut::reserve(KA, ExclusiveAccess)), Conflict);
    assert_eq!(outsider.access(), (Good, Good));
}

/// PREEMPT of the holder's key (SPC-4 §5.9.11.4.3): the reservation moves to the preempter with
/// the new type, the holder loses its registration (REGISTRATIONS PREEMPTED) and, when the type
/// changes, the remaining registrants get RESERVATIONS RELEASED.
#[test]
fn preempt_the_holder() {
    let d = Daemon::start("pr-preempt-holder");
    let [mut a, mut b, mut c, mut e] = hosts(&d);
    register(&mut a, KA);
    register(&mut b, KB);
    register(&mut c, KC);
    register(&mut e, KD);
    assert_eq!(a.prout(&PrOut::reserve(KA, WriteExclusive)), Good);
    let g = e.generation();

    // Same type: no RESERVATIONS RELEASED.
    assert_eq!(
        b.prout(&PrOut::preempt(KB, KA, WriteExclusive, false)),
        Good
    );
    assert_eq!(e.reservation(), Some((KB, WriteExclusive.code())));
    assert_eq!(e.read_keys(), (g + 1, vec![KB, KC, KD]));
    assert_eq!(
        uas([&mut a, &mut b, &mut c, &mut e]),
        [vec![REGISTRATIONS_PREEMPTED], NO_UA, NO_UA, NO_UA]
    );
    assert_eq!(a.access(), (Good, Conflict), "A is an outsider now");
    assert_eq!(b.access(), (Good, Good));

    // Another type: the registrants left get RESERVATIONS RELEASED.
    assert_eq!(
        c.prout(&PrOut::preempt(KC, KB, ExclusiveAccess, false)),
        Good
    );
    assert_eq!(
        uas([&mut a, &mut b, &mut c, &mut e]),
        [
            NO_UA,
            vec![REGISTRATIONS_PREEMPTED],
            NO_UA,
            vec![RESERVATIONS_RELEASED]
        ]
    );
    assert_eq!(e.reservation(), Some((KC, ExclusiveAccess.code())));
    assert_eq!(e.read_keys(), (g + 2, vec![KC, KD]));
    assert_eq!(b.access(), (Conflict, Conflict));
    assert_eq!(c.access(), (Good, Good));
}

/// PREEMPT of a key that does not hold the reservation (SPC-4 §5.9.11.4.4): only the
/// registrations of that key go, whatever SCOPE and TYPE say; a key nobody holds is a
/// conflict; a zero key without an all registrants reservation is INVALID FIELD IN PARAMETER
/// LIST.
#[test]
fn preempt_a_registrant_that_does_not_hold() {
    let d = Daemon::start("pr-preempt-registrant");
    let [mut a, mut b, mut c, mut outsider] = hosts(&d);
    register(&mut a, KA);
    register(&mut b, KB);
    register(&mut c, KC);
    assert_eq!(a.prout(&PrOut::reserve(KA, WriteExclusive)), Good);
    let g = outsider.generation();

    assert_eq!(
        b.prout(&PrOut::preempt(KB, KD, WriteExclusive, false)),
        Conflict,
        "nobody holds that key"
    );
    assert_eq!(
        b.prout(&PrOut::preempt(KB, 0, WriteExclusive, false)),
        INVALID_FIELD_IN_PARAMETER_LIST
    );
    assert_eq!(
        outsider.prout(&PrOut::preempt(0, KC, WriteExclusive, false)),
        Conflict,
        "an unregistered nexus cannot preempt"
    );
    assert_eq!(outsider.read_keys(), (g, vec![KA, KB, KC]));

    assert_eq!(
        b.prout(&PrOut::preempt(KB, KC, ExclusiveAccess, false)),
        Good
    );
    assert_eq!(outsider.read_keys(), (g + 1, vec![KA, KB]));
    assert_eq!(
        outsider.reservation(),
        Some((KA, WriteExclusive.code())),
        "the reservation is untouched, its type too"
    );
    assert_eq!(
        uas([&mut a, &mut b, &mut c, &mut outsider]),
        [NO_UA, NO_UA, vec![REGISTRATIONS_PREEMPTED], NO_UA]
    );
    assert_eq!(c.prout(&PrOut::release(KC, WriteExclusive)), Conflict);
}

/// PREEMPT with a zero key under an all registrants reservation (SPC-4 §5.9.11.4.3) removes
/// every other registration and reserves for the preempter; a non-zero key only removes that
/// key's registrations.
#[test]
fn preempt_all_registrants() {
    let d = Daemon::start("pr-preempt-allreg");
    let [mut a, mut b, mut c, mut e] = hosts(&d);
    register(&mut a, KA);
    register(&mut b, KB);
    register(&mut c, KC);
    register(&mut e, KD);
    let t = ExclusiveAccessAllRegistrants;
    assert_eq!(a.prout(&PrOut::reserve(KA, t)), Good);
    let g = a.generation();

    assert_eq!(b.prout(&PrOut::preempt(KB, KD, t, false)), Good);
    assert_eq!(a.read_keys(), (g + 1, vec![KA, KB, KC]));
    assert_eq!(a.reservation(), Some((0, t.code())));
    assert_eq!(
        uas([&mut a, &mut b, &mut c, &mut e]),
        [NO_UA, NO_UA, NO_UA, vec![REGISTRATIONS_PREEMPTED]]
    );
    assert_eq!(e.access(), (Conflict, Conflict));

    let wero = WriteExclusiveRegistrantsOnly;
    assert_eq!(b.prout(&PrOut::preempt(KB, 0, wero, false)), Good);
    assert_eq!(b.read_keys(), (g + 2, vec![KB]));
    assert_eq!(b.reservation(), Some((KB, wero.code())));
    assert_eq!(
        b.full_status(),
        vec![Registration::of(b.port(), KB).holding(wero)]
    );
    assert_eq!(
        uas([&mut a, &mut b, &mut c, &mut e]),
        [
            vec![REGISTRATIONS_PREEMPTED],
            NO_UA,
            vec![REGISTRATIONS_PREEMPTED],
            NO_UA
        ]
    );
    assert_eq!(a.access(), (Good, Conflict));
}

/// PREEMPT AND ABORT (SPC-4 §5.9.11.5): the preempted nexus's tasks end with TASK ABORTED
/// (TAS=1), other nexuses' tasks run on; then the same against the holder.
#[test]
fn preempt_and_abort() {
    let d = Daemon::start("pr-preempt-abort");
    let [mut a, mut b, mut c] = hosts(&d);
    register(&mut a, KA);
    register(&mut b, KB);
    register(&mut c, KC);
    let t = WriteExclusiveRegistrantsOnly;
    assert_eq!(a.prout(&PrOut::reserve(KA, t)), Good);
    let g = a.generation();

    // C and B each leave a write waiting for its data.
    let (c_itt, _) = c.start_write(8);
    let (b_itt, b_r2t) = b.start_write(16);
    assert_eq!(a.prout(&PrOut::preempt(KA, KC, t, true)), Good);
    assert_eq!(c.status_of(c_itt), Aborted, "C's stalled write is aborted");
    assert_eq!(b.finish_write(b_itt, &b_r2t), Good, "B's is not C's");
    assert_eq!(a.read_keys(), (g + 1, vec![KA, KB]));
    assert_eq!(a.reservation(), Some((KA, t.code())));
    assert_eq!(
        uas([&mut a, &mut b, &mut c]),
        [NO_UA, NO_UA, vec![REGISTRATIONS_PREEMPTED]]
    );
    assert_eq!(
        c.access(),
        (Good, Conflict),
        "fenced: reads only, under WERO"
    );

    // B fences the holder while the holder's write is stalled.
    let (a_itt, _) = a.start_write(24);
    assert_eq!(b.prout(&PrOut::preempt(KB, KA, t, true)), Good);
    assert_eq!(a.status_of(a_itt), Aborted);
    assert_eq!(b.read_keys(), (g + 2, vec![KB]));
    assert_eq!(b.reservation(), Some((KB, t.code())));
    assert_eq!(
        uas([&mut a, &mut b, &mut c]),
        [vec![REGISTRATIONS_PREEMPTED], NO_UA, NO_UA]
    );
    assert_eq!(a.access(), (Good, Conflict));
    assert_eq!(b.access(), (Good, Good));
}

/// REGISTER AND MOVE (SPC-4 §5.9.8, "Register behaviors for a REGISTER AND MOVE service
/// action", §6.16.4): its errors, moves to unregistered ports (another port of the source's
/// initiator among them), a move with UNREG=1 to a registered port, and the all registrants
/// types that cannot move.
#[test]
fn register_and_move() {
    let d = Daemon::start("pr-move");
    let [mut a, mut b, mut c, mut e] = hosts(&d);
    let mut a2 = Host::login(&d, NAMES[0], other_isid(0));
    register(&mut a, KA);
    register(&mut c, KC);
    let (a_tid, a2_tid, b_tid) = (a.tid(), a2.tid(), b.tid());
    let mv = |key: u64, sa_key: u64, to: &TransportId, rtpi: u16, unreg: bool| {
        PrOut::register_and_move(key, sa_key, to.clone(), rtpi, unreg)
    };

    // No persistent reservation: INVALID FIELD IN CDB.
    assert_eq!(a.prout(&mv(KA, KB, &b_tid, 1, false)), INVALID_FIELD_IN_CDB);
    let t = ExclusiveAccess;
    assert_eq!(a.prout(&PrOut::reserve(KA, t)), Good);
    let g = e.generation();

    // An unregistered nexus, or a RESERVATION KEY that is not the nexus's: conflict.
    assert_eq!(e.prout(&mv(0, KB, &b_tid, 1, false)), Conflict);
    assert_eq!(a.prout(&mv(KC, KB, &b_tid, 1, false)), Conflict);
    // A registrant that does not hold the reservation: conflict.
    assert_eq!(c.prout(&mv(KC, KB, &b_tid, 1, false)), Conflict);
    // The source's own initiator port, named by port or by name: INVALID FIELD IN PARAMETER
    // LIST.
    assert_eq!(
        a.prout(&mv(KA, KB, &a_tid, 1, false)),
        INVALID_FIELD_IN_PARAMETER_LIST
    );
    assert_eq!(
        a.prout(&mv(KA, KB, &TransportId::device(NAMES[0]), 1, false)),
        INVALID_FIELD_IN_PARAMETER_LIST
    );
    // SERVICE ACTION RESERVATION KEY zero: INVALID FIELD IN PARAMETER LIST.
    assert_eq!(
        a.prout(&mv(KA, 0, &b_tid, 1, false)),
        INVALID_FIELD_IN_PARAMETER_LIST
    );
    // No target port with RELATIVE TARGET PORT IDENTIFIER 2: INVALID FIELD IN PARAMETER LIST.
    assert_eq!(
        a.prout(&mv(KA, KB, &b_tid, 2, false)),
        INVALID_FIELD_IN_PARAMETER_LIST
    );
    assert_eq!(e.read_keys(), (g, vec![KA, KC]));
    assert_eq!(e.reservation(), Some((KA, t.code())));

    // To another port of the source's initiator (same name, another ISID): registered with the
    // new key, holding; the source keeps its registration (UNREG=0), not the reservation.
    assert_eq!(a.prout(&mv(KA, KB, &a2_tid, 1, false)), Good);
    assert_eq!(e.read_keys(), (g + 1, vec![KA, KB, KC]));
    assert_eq!(e.reservation(), Some((KB, t.code())));
    assert_eq!(a2.access(), (Good, Good));
    assert_eq!(a.access(), (Conflict, Conflict));
    // On to B, unregistered.
    assert_eq!(a2.prout(&mv(KB, KD, &b_tid, 1, false)), Good);
    assert_eq!(e.generation(), g + 2);
    assert_eq!(e.reservation(), Some((KD, t.code())));
    let mut expected = vec![
        Registration::of(a.port(), KA),
        Registration::of(a2.port(), KB),
        Registration::of(b.port(), KD).holding(t),
        Registration::of(c.port(), KC),
    ];
    expected.sort();
    assert_eq!(e.full_status(), expected);
    assert_eq!(b.access(), (Good, Good));
    assert_eq!(a2.access(), (Conflict, Conflict));
    // SPC-4 names no unit attention for REGISTER AND MOVE.
    assert_eq!(
        uas([&mut a, &mut a2, &mut b, &mut c, &mut e]),
        [NO_UA, NO_UA, NO_UA, NO_UA, NO_UA]
    );

    // UNREG=1 to C, already registered: C's registration takes the new key, B's goes.
    let kc2 = KC + 1;
    assert_eq!(b.prout(&mv(KD, kc2, &c.tid(), 1, true)), Good);
    assert_eq!(e.read_keys(), (g + 3, vec![KA, KB, kc2]));
    assert_eq!(e.reservation(), Some((kc2, t.code())));
    assert_eq!(b.access(), (Conflict, Conflict));
    assert_eq!(
        b.prout(&PrOut::release(KD, t)),
        Conflict,
        "B is unregistered"
    );

    // An all registrants reservation cannot be moved: conflict.
    assert_eq!(c.prout(&PrOut::release(kc2, t)), Good);
    let t = WriteExclusiveAllRegistrants;
    assert_eq!(c.prout(&PrOut::reserve(kc2, t)), Good);
    assert_eq!(c.prout(&mv(kc2, KD, &e.tid(), 1, false)), Conflict);
    assert_eq!(e.read_keys(), (g + 3, vec![KA, KB, kc2]));
    assert_eq!(e.reservation(), Some((0, t.code())));
}

/// PRgeneration (SPC-4 §6.15.2) counts REGISTER, REGISTER AND IGNORE EXISTING KEY, CLEAR,
/// PREEMPT, PREEMPT AND ABORT and REGISTER AND MOVE that complete, never RESERVE, RELEASE or a
/// command that fails.
#[test]
fn prgeneration_counts_registration_changes_only() {
    let d = Daemon::start("pr-generation");
    let [mut a, mut b, mut c] = hosts(&d);
    let mut observer = Host::login(&d, NAMES[3], isid(3));
    let t = WriteExclusiveRegistrantsOnly;
    let a_tid = a.tid();
    // (who, command, outcome, PRgeneration change)
    let steps: Vec<(usize, PrOut, Outcome, u32)> = vec![
        (0, PrOut::register(0, KA), Good, 1),
        (1, PrOut::register_ignore(KB), Good, 1),
        (2, PrOut::register(0, KC), Good, 1),
        (2, PrOut::register(0, 0), Conflict, 0),
        (2, PrOut::register(KC, KC), Good, 1),
        (0, PrOut::reserve(KA, t), Good, 0),
        (0, PrOut::reserve(KA, t), Good, 0),
        (1, PrOut::reserve(KB, t), Conflict, 0),
        (1, PrOut::release(KB, t), Good, 0),
        (0, PrOut::release(KA, t), Good, 0),
        (0, PrOut::reserve(KA, t), Good, 0),
        (1, PrOut::preempt(KB, KC, t, false), Good, 1),
        (2, PrOut::register_ignore(KC), Good, 1),
        (1, PrOut::preempt(KB, KA, t, true), Good, 1),
        (1, PrOut::preempt(KB, KD, t, false), Conflict, 0),
        (
            1,
            PrOut::register_and_move(KB, KA, a_tid, 1, false),
            Good,
            1,
        ),
        (0, PrOut::release(KA, t), Good, 0),
        (2, PrOut::clear(KC), Good, 1),
        (0, PrOut::register(0, 0), Good, 0),
    ];
    let mut hs = [&mut a, &mut b, &mut c];
    let mut g = observer.generation();
    for (who, op, expected, delta) in steps {
        let h = &mut hs[who];
        h.unit_attentions(); // this test is about PRgeneration
        assert_eq!(h.prout(&op), expected, "{op:?}");
        let now = observer.generation();
        assert_eq!(now, g.wrapping_add(delta), "PRgeneration after {op:?}");
        g = now;
    }
}

// ---------------------------------------------------------------------------------------------
// 3-5. SPEC_I_PT, ALL_TG_PT, READ FULL STATUS, APTPL.

/// SPEC_I_PT (SPC-4 §6.16.3): one REGISTER registers the sender, host B's port (TransportID
/// format 01b) and every port of host C (format 00b), a session of C that logs in later
/// included; they act as registrants without registering themselves.
#[test]
fn spec_i_pt_registers_transport_ids() {
    let d = Daemon::start("pr-spec-i-pt");
    let [mut a, mut b, mut c, mut outsider] = hosts(&d);
    let g = outsider.generation();
    let mut op = PrOut::register(0, KA);
    op.spec_i_pt = true;
    op.transport_ids = vec![b.tid(), TransportId::device(NAMES[2])];
    assert_eq!(a.prout(&op), Good);
    assert_eq!(
        outsider.read_keys(),
        (g + 1, vec![KA; 3]),
        "one command, one PRgeneration"
    );
    let mut expected = vec![
        Registration::of(a.port(), KA),
        Registration::of(b.port(), KA),
        Registration::device(NAMES[2], KA),
    ];
    expected.sort();
    assert_eq!(outsider.full_status(), expected);

    // B reserves with the key it was given.
    let t = WriteExclusiveRegistrantsOnly;
    assert_eq!(b.prout(&PrOut::reserve(KA, t)), Good);
    assert_eq!(outsider.reservation(), Some((KA, t.code())));
    // C writes as a registrant; so does a session of C that logs in now, with another ISID.
    assert_eq!(c.access(), (Good, Good));
    let mut c2 = Host::login(&d, NAMES[2], other_isid(2));
    assert_eq!(c2.access(), (Good, Good));
    // RELEASE from a registrant that does not hold: GOOD (an unregistered nexus would conflict).
    assert_eq!(c2.prout(&PrOut::release(KA, t)), Good);
    assert_eq!(outsider.reservation(), Some((KA, t.code())));
    assert_eq!(outsider.access(), (Good, Conflict));
    // B holds the reservation: R_HOLDER on its descriptor alone.
    let expected: Vec<Registration> = expected
        .into_iter()
        .map(|r| if r.port == b.port() { r.holding(t) } else { r })
        .collect();
    assert_eq!(outsider.full_status(), expected);
    assert_eq!(
        uas([&mut a, &mut b, &mut c, &mut c2, &mut outsider]),
        [NO_UA, NO_UA, NO_UA, NO_UA, NO_UA]
    );
}

/// ALL_TG_PT (SPC-4 §6.16.3): READ FULL STATUS shows it per registration; it covers every
/// target port of that initiator port, not the initiator's other ports.
#[test]
fn all_tg_pt() {
    let d = Daemon::start("pr-all-tg-pt");
    let [mut a, mut b, mut c] = hosts(&d);
    let mut a2 = Host::login(&d, NAMES[0], other_isid(0));
    let mut op = PrOut::register(0, KA);
    op.all_tg_pt = true;
    assert_eq!(a.prout(&op), Good);
    register(&mut b, KB);
    let mut op = PrOut::register_ignore(KC);
    op.all_tg_pt = true;
    assert_eq!(c.prout(&op), Good);
    // A's other ISID is another initiator port: not registered, and free to register.
    assert_eq!(
        a2.prout(&PrOut::reserve(KA, WriteExclusiveRegistrantsOnly)),
        Conflict
    );
    register(&mut a2, KD);

    let mut expected = vec![
        Registration::of(a.port(), KA).all_tg_pt(),
        Registration::of(a2.port(), KD),
        Registration::of(b.port(), KB),
        Registration::of(c.port(), KC).all_tg_pt(),
    ];
    expected.sort();
    assert_eq!(b.full_status(), expected);

    // The registration made with ALL_TG_PT covers the nexus it came through.
    let t = WriteExclusiveRegistrantsOnly;
    assert_eq!(a.prout(&PrOut::reserve(KA, t)), Good);
    assert_eq!(a.access(), (Good, Good));
    assert_eq!(c.access(), (Good, Good));
    // ... and unregistering it releases the reservation (registrants only: RELEASED).
    assert_eq!(a.prout(&PrOut::register(KA, 0)), Good);
    assert_eq!(
        uas([&mut a, &mut a2, &mut b, &mut c]),
        [
            NO_UA,
            vec![RESERVATIONS_RELEASED],
            vec![RESERVATIONS_RELEASED],
            vec![RESERVATIONS_RELEASED]
        ]
    );
    assert_eq!(b.reservation(), None);
    assert_eq!(b.keys(), vec![KB, KC, KD]);
}

/// READ FULL STATUS (SPC-4 §6.15.5) with several registrations, two of them from one initiator
/// with two ISIDs and the same key: every descriptor's key, R_HOLDER, ALL_TG_PT, scope and
/// type, RELATIVE TARGET PORT IDENTIFIER and iSCSI TransportID; and ALLOCATION LENGTH
/// truncation keeps the full ADDITIONAL LENGTH.
#[test]
fn read_full_status() {
    let d = Daemon::start("pr-full-status");
    let [mut a, mut b, mut c, mut outsider] = hosts(&d);
    let mut a2 = Host::login(&d, NAMES[0], other_isid(0));
    for (h, key) in [(&mut a, KA), (&mut a2, KA), (&mut b, KB), (&mut c, KC)] {
        register(h, key);
    }
    let t = ExclusiveAccessRegistrantsOnly;
    assert_eq!(b.prout(&PrOut::reserve(KB, t)), Good);

    let data = outsider.prin(READ_FULL_STATUS);
    let (generation, regs) = parse_full_status(&data);
    assert_eq!(generation, outsider.generation());
    let mut expected = vec![
        Registration::of(a.port(), KA),
        Registration::of(a2.port(), KA),
        Registration::of(b.port(), KB).holding(t),
        Registration::of(c.port(), KC),
    ];
    expected.sort();
    assert_eq!(regs, expected);
    // Truncated to 8 bytes: the header still counts every descriptor.
    let head = outsider.prin_alloc(READ_FULL_STATUS, 8);
    assert_eq!(head, data[..8]);
    // Without registrations: the header alone.
    assert_eq!(c.prout(&PrOut::clear(KC)), Good);
    let empty = outsider.prin(READ_FULL_STATUS);
    assert_eq!(empty.len(), 8);
    assert_eq!(be32(&empty, 4), 0);
}

/// APTPL (SPC-4 §5.9.4): PTPL_A follows the APTPL bit of the last REGISTER, REGISTER AND
/// IGNORE EXISTING KEY or REGISTER AND MOVE; registrations and the reservation, moved there by
/// REGISTER AND MOVE, survive a SIGKILL and restart of the daemon.
#[test]
fn aptpl_follows_the_last_register_and_survives_sigkill() {
    let mut d = Daemon::start("pr-aptpl-matrix");
    let before = {
        let [mut a, mut b, mut c] = hosts(&d);
        assert!(!a.ptpl_active());
        let mut op = PrOut::register(0, KA);
        op.aptpl = true;
        assert_eq!(a.prout(&op), Good);
        assert!(c.ptpl_active());
        register(&mut b, KB);
        assert!(!c.ptpl_active(), "the last REGISTER had APTPL=0");
        let mut op = PrOut::register_ignore(KC);
        op.aptpl = true;
        assert_eq!(c.prout(&op), Good);
        assert!(c.ptpl_active());
        let t = WriteExclusiveRegistrantsOnly;
        assert_eq!(a.prout(&PrOut::reserve(KA, t)), Good);
        let mut op = PrOut::register_and_move(KA, KB, b.tid(), 1, true);
        op.aptpl = true;
        assert_eq!(a.prout(&op), Good);
        assert!(c.ptpl_active());
        assert_eq!(c.reservation(), Some((KB, t.code())));
        c.full_status()
    };

    let (dir, port) = (d.dir.clone(), d.addr.port());
    if let Some(mut child) = d.child.take() {
        child.kill().unwrap(); // SIGKILL: no shutdown path runs
        child.wait().unwrap();
    }
    let d2 = Daemon::spawn(dir.clone(), dir.join("ringsan.toml"), port);
    let [mut a, mut b, mut c] = hosts(&d2);
    assert_eq!(c.full_status(), before);
    assert_eq!(
        c.reservation(),
        Some((KB, WriteExclusiveRegistrantsOnly.code()))
    );
    assert!(c.ptpl_active());
    assert_eq!(
        a.access(),
        (Good, Conflict),
        "A unregistered itself (UNREG)"
    );
    assert_eq!(b.access(), (Good, Good));
    assert_eq!(c.access(), (Good, Good));
    // Re-registering without APTPL turns it off.
    assert_eq!(b.prout(&PrOut::register(KB, KB)), Good);
    assert!(!c.ptpl_active());
}

// ---------------------------------------------------------------------------------------------
// 6. Malformed commands.

/// Malformed PERSISTENT RESERVE OUT and IN commands (SPC-4 §6.16.1-§6.16.3, §6.15.1): each is
/// refused with the sense SPC-4 names and changes nothing.
#[test]
fn malformed_commands() {
    let d = Daemon::start("pr-malformed");
    let [mut a, mut b, mut c] = hosts(&d);
    register(&mut a, KA);
    register(&mut b, KB);
    let g = c.generation();
    let (reg_cdb, reg_params) = PrOut::register(KA, KD).encode();
    let basic = |len: usize| {
        let mut p = reg_params.clone();
        p.resize(len, 0);
        p
    };

    // SPEC_I_PT=0, not REGISTER AND MOVE, PARAMETER LIST LENGTH not 24: PARAMETER LIST LENGTH
    // ERROR (SPC-4 §6.16.3), whatever the service action (REGISTER and CLEAR here).
    for len in [0, 8, 23, 25, 28] {
        let p = basic(len);
        assert_eq!(
            a.prout_raw(&prout_cdb(reg_cdb[1], 0, len), &p),
            PARAMETER_LIST_LENGTH_ERROR,
            "REGISTER with {len} bytes"
        );
    }
    assert_eq!(
        a.prout_raw(&prout_cdb(0x03, 0, 23), &basic(23)),
        PARAMETER_LIST_LENGTH_ERROR,
        "CLEAR with 23 bytes"
    );
    // Reserved service actions: INVALID FIELD IN CDB.
    for sa in [0x08, 0x10, 0x1F] {
        assert_eq!(
            a.prout_raw(&prout_cdb(sa, 0, 24), &basic(24)),
            INVALID_FIELD_IN_CDB,
            "service action {sa:#x}"
        );
    }
    // RESERVE with a reserved or obsolete TYPE, or a SCOPE other than LU_SCOPE: INVALID FIELD
    // IN CDB.
    let mut reserve = basic(24);
    reserve[8..16].fill(0);
    for scope_type in [0x00, 0x02, 0x04, 0x09, 0x0F, 0x21, 0x11] {
        assert_eq!(
            a.prout_raw(&prout_cdb(0x01, scope_type, 24), &reserve),
            INVALID_FIELD_IN_CDB,
            "RESERVE with SCOPE/TYPE {scope_type:#04x}"
        );
    }
    assert_eq!(c.reservation(), None);

    // SPEC_I_PT TransportIDs that do not parse: INVALID FIELD IN PARAMETER LIST, and the
    // sender is not registered either.
    let b_port = b.port();
    let bad_tids: [(&str, Vec<u8>); 6] = [
        (
            "Fibre Channel protocol identifier",
            raw_transport_id(0x40, b_port.as_bytes()),
        ),
        ("format code 10b", raw_transport_id(0x85, b_port.as_bytes())),
        (
            "format 01b without the ISID",
            raw_transport_id(0x45, NAMES[1].as_bytes()),
        ),
        (
            "ISID not hexadecimal",
            raw_transport_id(0x45, format!("{},i,0x40001234abzz", NAMES[1]).as_bytes()),
        ),
        (
            "ISID of 11 digits",
            raw_transport_id(0x45, format!("{},i,0x40001234ab0", NAMES[1]).as_bytes()),
        ),
        ("format 00b, empty name", raw_transport_id(0x05, b"")),
    ];
    for (what, tid) in bad_tids {
        let p = spec_i_pt_params(KC, tid.len(), &tid);
        assert_eq!(
            c.prout_raw(&prout_cdb(0x00, 0, p.len()), &p),
            INVALID_FIELD_IN_PARAMETER_LIST,
            "{what}"
        );
    }
    // A TRANSPORTID PARAMETER DATA LENGTH that disagrees with the parameter list: PARAMETER
    // LIST LENGTH ERROR.
    let tid = b.tid().encode();
    let p = spec_i_pt_params(KC, tid.len() + 4, &tid);
    assert_eq!(
        c.prout_raw(&prout_cdb(0x00, 0, p.len()), &p),
        PARAMETER_LIST_LENGTH_ERROR
    );
    // SPEC_I_PT=1 with a service action other than REGISTER: INVALID FIELD IN PARAMETER LIST.
    let p = spec_i_pt_params(KC, tid.len(), &tid);
    assert_eq!(
        c.prout_raw(&prout_cdb(0x06, 0, p.len()), &p),
        INVALID_FIELD_IN_PARAMETER_LIST,
        "REGISTER AND IGNORE EXISTING KEY with SPEC_I_PT"
    );
    let mut p = spec_i_pt_params(0, tid.len(), &tid);
    p[0..8].copy_from_slice(&KA.to_be_bytes());
    assert_eq!(
        a.prout_raw(&prout_cdb(0x01, WriteExclusive.code(), p.len()), &p),
        INVALID_FIELD_IN_PARAMETER_LIST,
        "RESERVE with SPEC_I_PT"
    );

    // PERSISTENT RESERVE IN with a reserved service action: INVALID FIELD IN CDB.
    let r = c.cmd(&[PRIN, 0x04, 0, 0, 0, 0, 0, 0x10, 0, 0], &[], 0x1000);
    assert_eq!(outcome(&r), INVALID_FIELD_IN_CDB);

    // Nothing changed.
    assert_eq!(c.read_keys(), (g, vec![KA, KB]));
    assert_eq!(c.reservation(), None);
    assert_eq!(uas([&mut a, &mut b, &mut c]), [NO_UA; 3]);
}
