//! Persistent reservations as fence_scsi uses them, through the real daemon: two hosts register,
//! one holds Write Exclusive Registrants Only, the other fences it with PREEMPT AND ABORT: the
//! victim's stalled write ends with TASK ABORTED, its registration is gone (REGISTRATIONS
//! PREEMPTED), and its writes conflict from then on.

mod common;

use common::initiator::{write10, Conn, LoginOptions};
use common::{Daemon, IQN};
use ringsan::iscsi::pdu::Response;
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
    assert!(matches!(a.recv_response().unwrap().0, Response::R2t(_)));
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
    let r = a.scsi(0, &TUR, &[], 0).unwrap();
    assert_eq!(r.sense_key(), (6, 0x2a, 0x05), "REGISTRATIONS PREEMPTED");
    let w = a.scsi(0, &write10(0, 1), &[0u8; 512], 0).unwrap();
    assert_eq!(w.status, 0x18, "the fenced host's writes conflict");
    let w = b.scsi(0, &write10(0, 1), &[1u8; 512], 0).unwrap();
    assert_eq!(w.status, 0, "the new holder writes");
}
