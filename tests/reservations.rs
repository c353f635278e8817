//! Persistent reservations as fence_scsi uses them, through the real daemon: two hosts register,
//! one holds Write Exclusive Registrants Only, the other fences it with PREEMPT AND ABORT: the
//! victim's stalled write ends with TASK ABORTED, the data it still sends for it is dropped
//! silently, its registration is gone (REGISTRATIONS PREEMPTED), its writes conflict from then on
//! and its reads still work. Then APTPL across SIGKILL and restart, a restart without APTPL, and a
//! damaged APTPL state file.

mod common;

use common::initiator::{read10, write10, Conn, LoginOptions};
use common::{Daemon, IQN};
use ringsan::iscsi::pdu::{encode_lun, DataOut, Response};
use ringsan::scsi::pr::{PrOut, PrType};

const TUR: [u8; 6] = [0, 0, 0, 0, 0, 0];

fn login(d: &Daemon, name: &str) -> Conn {
    let mut c = Conn::connect(d.addr);
    let mut o = LoginOptions::new(IQN);
    o.initiator = name.into();
    o.immediate_data = false;
    o.initial_r2t = true;
    c.login(&o).unwrap();
    let _ = c.scsi(0, &TUR, &[], 0); // power-on unit attention
    c
}

fn prout(c: &mut Conn, op: &PrOut) -> u8 {
    let (cdb, params) = op.encode();
    c.scsi(0, &cdb, &params, 0).unwrap().status
}

#[test]
fn fence_with_preempt_and_abort() {
    let d = Daemon::start("fence");
    let mut a = login(&d, "iqn.2026-11.io.ringsan:dom0-a");
    let mut b = login(&d, "iqn.2026-11.io.ringsan:dom0-b");
    assert_eq!(prout(&mut a, &PrOut::register_ignore(0xA)), 0);
    assert_eq!(prout(&mut b, &PrOut::register_ignore(0xB)), 0);
    assert_eq!(
        prout(
            &mut a,
            &PrOut::reserve(0xA, PrType::WriteExclusiveRegistrantsOnly)
        ),
        0
    );
    // A starts a write and stalls before sending its data.
    let itt = a.send_command(0, &write10(64, 8), true, 4096, &[]).unwrap();
    let r2t = match a.recv_response().unwrap().0 {
        Response::R2t(r) => r,
        other => panic!("expected an R2T, got {other:?}"),
    };
    // B fences A.
    assert_eq!(
        prout(
            &mut b,
            &PrOut::preempt(0xB, 0xA, PrType::WriteExclusiveRegistrantsOnly, true)
        ),
        0
    );
    match a.recv_response().unwrap().0 {
        Response::ScsiResponse(r) => {
            assert_eq!(r.itt, itt);
            assert_eq!(
                r.status, 0x40,
                "the victim's task ends with TASK ABORTED (TAS=1)"
            );
        }
        other => panic!("expected the aborted write's status, got {other:?}"),
    }
    // The victim's data, already on its way when it was fenced, is dropped without a Reject:
    // the next PDU it gets is the answer to its next command.
    let data_out = DataOut {
        final_flag: true,
        data_len: 4096,
        lun: encode_lun(0),
        itt,
        ttt: r2t.ttt,
        exp_statsn: a.exp_statsn,
        data_sn: 0,
        buffer_offset: 0,
    };
    a.send(&data_out.encode(), &[0u8; 4096]).unwrap();
    let r = a.scsi(0, &TUR, &[], 0).unwrap();
    assert_eq!(r.sense_key(), (6, 0x2a, 0x05), "REGISTRATIONS PREEMPTED");
    let w = a.scsi(0, &write10(0, 1), &[0u8; 512], 0).unwrap();
    assert_eq!(w.status, 0x18, "the fenced host's writes conflict");
    let r = a.scsi(0, &read10(0, 1), &[], 512).unwrap();
    assert_eq!(r.status, 0, "the fenced host still reads (WERO)");
    let w = b.scsi(0, &write10(0, 1), &[1u8; 512], 0).unwrap();
    assert_eq!(w.status, 0, "the new holder writes");
}

/// PERSISTENT RESERVE IN with service action `sa`; the parameter data.
fn prin(c: &mut Conn, sa: u8) -> Vec<u8> {
    let cdb = [0x5E, sa, 0, 0, 0, 0, 0, 0x10, 0, 0];
    let r = c.scsi(0, &cdb, &[], 0x1000).unwrap();
    assert_eq!(
        r.status,
        0,
        "PERSISTENT RESERVE IN {sa}: {:?}",
        r.sense_key()
    );
    r.data
}

/// The reservation keys READ KEYS reports.
fn read_keys(c: &mut Conn) -> Vec<u64> {
    let d = prin(c, 0);
    let len = u32::from_be_bytes([d[4], d[5], d[6], d[7]]) as usize;
    d[8..8 + len]
        .chunks(8)
        .map(|k| u64::from_be_bytes(k.try_into().unwrap()))
        .collect()
}

/// READ RESERVATION: (key, type) of the reservation, if any.
fn read_reservation(c: &mut Conn) -> Option<(u64, u8)> {
    let d = prin(c, 1);
    let len = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
    (len >= 16).then(|| {
        (
            u64::from_be_bytes(d[8..16].try_into().unwrap()),
            d[21] & 0x0f,
        )
    })
}

fn sigkill_and_restart(d: &mut Daemon) -> Daemon {
    let (dir, port) = (d.dir.clone(), d.addr.port());
    if let Some(mut child) = d.child.take() {
        child.kill().unwrap(); // SIGKILL: no shutdown path runs
        child.wait().unwrap();
    }
    Daemon::spawn(dir.clone(), dir.join("ringsan.toml"), port)
}

const HOST_A: &str = "iqn.2026-11.io.ringsan:dom0-a";
const HOST_B: &str = "iqn.2026-11.io.ringsan:dom0-b";
const HOST_C: &str = "iqn.2026-11.io.ringsan:dom0-c";

#[test]
fn aptpl_reservations_survive_sigkill() {
    let mut d = Daemon::start("aptpl-sigkill");
    {
        let mut a = login(&d, HOST_A);
        let mut b = login(&d, HOST_B);
        let caps = prin(&mut a, 2);
        assert_eq!(
            caps[2] & 0x01,
            0x01,
            "PTPL_C: the unit can persist its state"
        );
        let mut reg = PrOut::register_ignore(0xA);
        reg.aptpl = true;
        assert_eq!(prout(&mut a, &reg), 0, "REGISTER with APTPL is accepted");
        let mut reg = PrOut::register_ignore(0xB);
        reg.aptpl = true;
        assert_eq!(prout(&mut b, &reg), 0);
        assert_eq!(
            prout(
                &mut a,
                &PrOut::reserve(0xA, PrType::WriteExclusiveRegistrantsOnly)
            ),
            0
        );
        assert_eq!(prin(&mut a, 2)[3] & 0x01, 0x01, "PTPL_A");
    }
    let mut d2 = sigkill_and_restart(&mut d);
    assert!(
        d2.log_text().contains("persistent reservations restored"),
        "{}",
        d2.log_text()
    );
    let mut a = login(&d2, HOST_A);
    assert_eq!(
        read_keys(&mut a),
        vec![0xA, 0xB],
        "both registrations came back"
    );
    assert_eq!(
        read_reservation(&mut a),
        Some((0xA, 0x5)),
        "the reservation came back"
    );
    assert_eq!(prin(&mut a, 2)[3] & 0x01, 0x01, "APTPL still active");
    let mut c = login(&d2, HOST_C);
    let w = c.scsi(0, &write10(0, 1), &[7u8; 512], 0).unwrap();
    assert_eq!(w.status, 0x18, "an unregistered host is still fenced");
    let mut b = login(&d2, HOST_B);
    let w = b.scsi(0, &write10(0, 1), &[7u8; 512], 0).unwrap();
    assert_eq!(w.status, 0, "a registrant writes under WERO");
    // Unregistering everyone with APTPL cleared is persisted too.
    assert_eq!(prout(&mut a, &PrOut::register(0xA, 0)), 0);
    let r = b.scsi(0, &TUR, &[], 0).unwrap();
    assert_eq!(
        r.sense_key(),
        (6, 0x2a, 0x04),
        "the holder left: RESERVATIONS RELEASED for the other registrant"
    );
    assert_eq!(prout(&mut b, &PrOut::register(0xB, 0)), 0);
    drop((a, b, c));
    let d3 = sigkill_and_restart(&mut d2);
    let mut a = login(&d3, HOST_A);
    assert_eq!(read_keys(&mut a), Vec::<u64>::new());
    assert_eq!(read_reservation(&mut a), None);
}

#[test]
fn without_aptpl_a_restart_clears_reservations() {
    let mut d = Daemon::start("no-aptpl");
    {
        let mut a = login(&d, HOST_A);
        assert_eq!(prout(&mut a, &PrOut::register_ignore(0xA)), 0);
        assert_eq!(
            prout(&mut a, &PrOut::reserve(0xA, PrType::ExclusiveAccess)),
            0
        );
        let mut c = login(&d, HOST_C);
        let r = c.scsi(0, &read10(0, 1), &[], 512).unwrap();
        assert_eq!(r.status, 0x18, "Exclusive Access holds before the restart");
    }
    let d2 = sigkill_and_restart(&mut d);
    let mut c = login(&d2, HOST_C);
    assert_eq!(
        read_keys(&mut c),
        Vec::<u64>::new(),
        "a power on clears them"
    );
    let r = c.scsi(0, &read10(0, 1), &[], 512).unwrap();
    assert_eq!(r.status, 0);
}

#[test]
fn a_damaged_state_file_keeps_its_lun_offline() {
    let mut d = Daemon::start_with("pr-damaged", &[(0, "8M", 512), (1, "8M", 512)], "");
    {
        let mut a = login(&d, HOST_A);
        let mut reg = PrOut::register_ignore(0xA);
        reg.aptpl = true;
        assert_eq!(prout(&mut a, &reg), 0);
    }
    let files: Vec<_> = std::fs::read_dir(d.dir.join("pr"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "one state file, for LUN 0: {files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    std::fs::write(&files[0], text.replace("generation = ", "generation = \"")).unwrap();
    let d2 = sigkill_and_restart(&mut d);
    let log = d2.log_text();
    assert!(
        log.contains(&files[0].display().to_string()) && log.contains("line"),
        "the log names the file and the place: {log}"
    );
    let mut a = Conn::connect(d2.addr);
    let mut o = LoginOptions::new(IQN);
    o.initiator = HOST_A.into();
    a.login(&o).unwrap();
    let inq = a.scsi(0, &[0x12, 0, 0, 0, 36, 0], &[], 36).unwrap();
    assert_eq!(inq.status, 0, "INQUIRY still answers");
    for _ in 0..3 {
        let r = a.scsi(0, &TUR, &[], 0).unwrap();
        if r.sense_key() == (6, 0x29, 0) {
            continue; // the power-on unit attention may come first
        }
        assert_eq!(
            r.sense_key(),
            (2, 0x04, 0x03),
            "NOT READY, MANUAL INTERVENTION REQUIRED"
        );
        break;
    }
    let r = a.scsi(0, &read10(0, 1), &[], 512).unwrap();
    assert_eq!(r.sense_key(), (2, 0x04, 0x03), "no data while offline");
    let _ = a.scsi(1, &TUR, &[], 0);
    let r = a.scsi(1, &read10(0, 1), &[], 512).unwrap();
    assert_eq!(r.status, 0, "the other LUN serves on");
    assert_eq!(
        std::fs::read_to_string(&files[0]).unwrap(),
        text.replace("generation = ", "generation = \""),
        "the damaged file is left as it is"
    );
}
