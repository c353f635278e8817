//! Hostile input at the socket: every malformed, oversized or out-of-order PDU gets what RFC 7143
//! names (a Reject, a silent ignore or a clean disconnect), never a panic, a hang or unbounded
//! memory, and other sessions keep working.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::initiator::{read10, read16, write10, Conn, LoginOptions};
use common::{Daemon, IQN};
use ringsan::iscsi::pdu::{reject_reason, Bhs, DataOut, LoginRequest, NopOut, Response};

fn logged_in(d: &Daemon, isid_last: u8) -> Conn {
    let mut c = Conn::connect(d.addr);
    let mut o = LoginOptions::new(IQN);
    o.isid[5] = isid_last;
    c.login(&o).expect("login");
    c
}

fn logged_in_with(d: &Daemon, o: &LoginOptions) -> Conn {
    let mut c = Conn::connect(d.addr);
    c.login(o).expect("login");
    c
}

fn expect_reject(c: &mut Conn, reason: u8) {
    match c.recv_response().expect("a response") {
        (Response::Reject(r), data) => {
            assert_eq!(r.reason, reason, "reject reason");
            assert_eq!(data.len(), 48, "a Reject carries the rejected header");
        }
        (other, _) => panic!("expected a Reject, got {other:?}"),
    }
}

/// After each hostile act the daemon is alive and a fresh session works.
fn still_serving(d: &mut Daemon) {
    assert!(d.alive(), "ringsand died; log:\n{}", d.log_text());
    let mut c = logged_in(d, 200);
    let r = c
        .scsi(0, &[0, 0, 0, 0, 0, 0], &[], 0)
        .expect("TEST UNIT READY");
    assert!(r.status == 0 || r.status == 2, "status {}", r.status);
    let _ = c.logout();
}

#[test]
fn unknown_opcode_is_rejected_and_the_session_goes_on() {
    let mut d = Daemon::start("unknown-op");
    let mut c = logged_in(&d, 1);
    let mut bhs = Bhs::default();
    bhs.0[0] = 0x1c; // not an initiator opcode
    bhs.0[16..20].copy_from_slice(&77u32.to_be_bytes());
    c.send(&bhs, &[]).unwrap();
    expect_reject(&mut c, reject_reason::COMMAND_NOT_SUPPORTED);
    assert_eq!(c.ping(b"still here").unwrap(), b"still here");
    still_serving(&mut d);
}

#[test]
fn oversized_data_segment_is_rejected_and_the_connection_closed() {
    let mut d = Daemon::start("oversize");
    let mut c = logged_in(&d, 2);
    let n = NopOut {
        immediate: true,
        data_len: 0x00ff_ffff,
        lun: 0,
        itt: 9,
        ttt: 0xffff_ffff,
        cmdsn: c.cmdsn,
        exp_statsn: c.exp_statsn,
    };
    // Announce 16 MiB - 1 (the 24-bit maximum) but send only the header: the target must not try to allocate or read it.
    c.stream.write_all(&n.encode().0).unwrap();
    expect_reject(&mut c, reject_reason::PROTOCOL_ERROR);
    assert!(
        c.closed_within(Duration::from_secs(5)),
        "connection should be closed"
    );
    still_serving(&mut d);
}

#[test]
fn header_digest_error_closes_the_connection() {
    let mut d = Daemon::start("hdigest");
    let mut o = LoginOptions::new(IQN);
    o.header_digest = true;
    o.data_digest = true;
    let mut c = logged_in_with(&d, &o);
    assert_eq!(c.ping(b"digests on").unwrap(), b"digests on");
    let n = NopOut {
        immediate: true,
        data_len: 0,
        lun: 0,
        itt: 5,
        ttt: 0xffff_ffff,
        cmdsn: c.cmdsn,
        exp_statsn: c.exp_statsn,
    };
    let mut raw = n.encode().0.to_vec();
    raw.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]); // wrong digest
    c.stream.write_all(&raw).unwrap();
    assert!(
        c.closed_within(Duration::from_secs(5)),
        "a header digest error must close the connection"
    );
    still_serving(&mut d);
}

#[test]
fn data_digest_error_is_rejected() {
    let mut d = Daemon::start("ddigest");
    let mut o = LoginOptions::new(IQN);
    o.data_digest = true;
    let mut c = logged_in_with(&d, &o);
    let payload = b"ping!!!!";
    let n = NopOut {
        immediate: true,
        data_len: payload.len() as u32,
        lun: 0,
        itt: 6,
        ttt: 0xffff_ffff,
        cmdsn: c.cmdsn,
        exp_statsn: c.exp_statsn,
    };
    let mut raw = n.encode().0.to_vec();
    raw.extend_from_slice(payload);
    raw.extend_from_slice(&[1, 2, 3, 4]); // wrong data digest
    c.stream.write_all(&raw).unwrap();
    // A NOP-Out with a bad data digest is dropped (not answered); the session goes on.
    assert_eq!(c.ping(b"after").unwrap(), b"after");
    still_serving(&mut d);
}

#[test]
fn data_out_for_an_unknown_task_is_rejected() {
    let mut d = Daemon::start("unknown-task");
    let mut c = logged_in(&d, 3);
    let data = vec![0u8; 512];
    let dout = DataOut {
        final_flag: true,
        data_len: 512,
        lun: 0,
        itt: 0x5555,
        ttt: 0xffff_ffff,
        exp_statsn: c.exp_statsn,
        data_sn: 0,
        buffer_offset: 0,
    };
    c.send(&dout.encode(), &data).unwrap();
    expect_reject(&mut c, reject_reason::INVALID_PDU_FIELD);
    assert_eq!(c.ping(b"x").unwrap(), b"x");
    still_serving(&mut d);
}

#[test]
fn login_pdu_in_full_feature_phase_is_rejected_and_closed() {
    let mut d = Daemon::start("login-ffp");
    let mut c = logged_in(&d, 4);
    let l = LoginRequest {
        transit: true,
        cont: false,
        csg: 1,
        nsg: 3,
        version_max: 0,
        version_min: 0,
        data_len: 0,
        isid: [0x80, 0, 0, 0, 0, 4],
        tsih: 0,
        itt: 99,
        cid: 1,
        cmdsn: c.cmdsn,
        exp_statsn: c.exp_statsn,
    };
    c.send(&l.encode(), &[]).unwrap();
    expect_reject(&mut c, reject_reason::PROTOCOL_ERROR);
    assert!(c.closed_within(Duration::from_secs(5)));
    still_serving(&mut d);
}

#[test]
fn a_connection_that_stops_mid_pdu_does_not_disturb_others() {
    let mut d = Daemon::start("mid-pdu");
    let mut other = logged_in(&d, 5);
    let _ = other.scsi(0, &[0, 0, 0, 0, 0, 0], &[], 0); // consume the power-on unit attention
    {
        let mut c = logged_in(&d, 6);
        let w = write10(0, 8);
        let cmd = ringsan::iscsi::pdu::ScsiCommand {
            immediate: false,
            final_flag: true,
            read: false,
            write: true,
            attr: 1,
            ahs_len_words: 0,
            data_len: 4096,
            lun: 0,
            itt: 3,
            expected_data_len: 4096,
            cmdsn: c.cmdsn,
            exp_statsn: c.exp_statsn,
            cdb: {
                let mut x = [0u8; 16];
                x[..10].copy_from_slice(&w);
                x
            },
        };
        c.stream.write_all(&cmd.encode().0).unwrap();
        c.stream.write_all(&[0u8; 1000]).unwrap(); // 1000 of the 4096 announced bytes, then vanish
    }
    let r = other
        .scsi(0, &read10(0, 8), &[], 4096)
        .expect("the other session still reads");
    assert_eq!(r.status, 0);
    assert_eq!(r.data.len(), 4096);
    still_serving(&mut d);
}

#[test]
fn read16_of_0xffffffff_blocks_fails_cleanly() {
    let mut d = Daemon::start("read16-huge");
    let mut c = logged_in(&d, 7);
    let _ = c.scsi(0, &[0, 0, 0, 0, 0, 0], &[], 0); // consume the power-on unit attention
    let r = c
        .scsi(0, &read16(0, 0xffff_ffff), &[], 0xffff_ffff)
        .expect("a response, not a hang");
    assert_eq!(r.status, 2, "CHECK CONDITION");
    let (key, asc, _) = r.sense_key();
    assert_eq!(key, 5, "ILLEGAL REQUEST");
    assert!(
        asc == 0x21 || asc == 0x24,
        "LBA OUT OF RANGE or INVALID FIELD IN CDB, got {asc:#x}"
    );
    still_serving(&mut d);
}

#[test]
fn commands_outside_the_cmdsn_window_are_silently_ignored() {
    let d = Daemon::start("cmdsn");
    let mut c = logged_in(&d, 8);
    let saved = c.cmdsn;
    c.cmdsn = saved.wrapping_add(100_000); // far beyond MaxCmdSN
    let itt = c.next_itt();
    let cmd = ringsan::iscsi::pdu::ScsiCommand {
        immediate: false,
        final_flag: true,
        read: false,
        write: false,
        attr: 1,
        ahs_len_words: 0,
        data_len: 0,
        lun: 0,
        itt,
        expected_data_len: 0,
        cmdsn: c.cmdsn,
        exp_statsn: c.exp_statsn,
        cdb: [0u8; 16],
    };
    c.send(&cmd.encode(), &[]).unwrap();
    c.cmdsn = saved;
    // The next in-window command is answered; the ignored one never is.
    let r = c.scsi(0, &[0, 0, 0, 0, 0, 0], &[], 0).unwrap();
    assert!(r.status == 0 || r.status == 2);
    assert_eq!(c.ping(b"z").unwrap(), b"z");
}

#[test]
fn hundreds_of_half_open_connections_do_not_stop_service() {
    let mut d = Daemon::start("half-open");
    let mut idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(d.addr).expect("connect"))
        .collect();
    // Half of them send half a BHS and stall.
    for s in idle.iter_mut().step_by(2) {
        let _ = s.write_all(&[0x43, 0x87, 0, 0, 0, 0]);
    }
    still_serving(&mut d);
    drop(idle);
    still_serving(&mut d);
}

#[test]
fn random_garbage_gets_a_clean_disconnect() {
    let mut d = Daemon::start("garbage");
    let mut x = 0x1234_5678u32;
    for _ in 0..20 {
        let mut s = TcpStream::connect(d.addr).unwrap();
        let junk: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let _ = s.write_all(&junk);
    }
    still_serving(&mut d);
}
