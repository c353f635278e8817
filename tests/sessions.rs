//! Session life: login and logout, session reinstatement (same initiator and ISID with TSIH 0
//! ends the old session and queues I_T NEXUS LOSS OCCURRED), unit attentions, task management,
//! and SIGTERM with I/O in flight (initiators are asked to log out, the daemon exits cleanly).

mod common;

use std::time::Duration;

use common::initiator::{read10, write10, Conn, LoginOptions};
use common::{Daemon, IQN};

const TUR: [u8; 6] = [0, 0, 0, 0, 0, 0];

#[test]
fn first_command_sees_power_on_then_goes_through() {
    let d = Daemon::start("power-on");
    let mut c = Conn::connect(d.addr);
    c.login(&LoginOptions::new(IQN)).unwrap();
    let r = c.scsi(0, &TUR, &[], 0).unwrap();
    assert_eq!(r.status, 2);
    assert_eq!(
        r.sense_key(),
        (6, 0x29, 0x00),
        "POWER ON, RESET, OR BUS DEVICE RESET OCCURRED"
    );
    assert_eq!(c.scsi(0, &TUR, &[], 0).unwrap().status, 0);
    assert_eq!(c.logout().unwrap(), 0);
}

#[test]
fn write_then_read_through_r2t_and_immediate_data() {
    let d = Daemon::start("rw");
    for (immediate, initial_r2t) in [(true, false), (false, true), (true, true)] {
        let mut c = Conn::connect(d.addr);
        let mut o = LoginOptions::new(IQN);
        o.immediate_data = immediate;
        o.initial_r2t = initial_r2t;
        c.login(&o).unwrap();
        let _ = c.scsi(0, &TUR, &[], 0);
        let data: Vec<u8> = (0..300 * 512).map(|i| (i * 7 % 251) as u8).collect();
        let w = c.scsi(0, &write10(100, 300), &data, 0).unwrap();
        assert_eq!(w.status, 0, "write status, sense {:?}", w.sense_key());
        let r = c
            .scsi(0, &read10(100, 300), &[], data.len() as u32)
            .unwrap();
        assert_eq!(r.status, 0);
        assert!(
            r.data == data,
            "read back differs (immediate {immediate}, initial_r2t {initial_r2t})"
        );
        c.logout().unwrap();
    }
}

#[test]
fn residual_underflow_is_reported() {
    let d = Daemon::start("residual");
    let mut c = Conn::connect(d.addr);
    c.login(&LoginOptions::new(IQN)).unwrap();
    let _ = c.scsi(0, &TUR, &[], 0);
    let r = c.scsi(0, &read10(0, 1), &[], 1024).unwrap();
    assert_eq!(r.status, 0);
    assert_eq!(r.data.len(), 512);
    assert!(
        r.underflow && r.residual == 512,
        "underflow {} residual {}",
        r.underflow,
        r.residual
    );
}

#[test]
fn reinstatement_ends_the_old_session_and_raises_nexus_loss() {
    let d = Daemon::start("reinstate");
    let o = LoginOptions::new(IQN);
    let mut old = Conn::connect(d.addr);
    old.login(&o).unwrap();
    let _ = old.scsi(0, &TUR, &[], 0);
    assert_eq!(old.scsi(0, &TUR, &[], 0).unwrap().status, 0);
    let mut new = Conn::connect(d.addr);
    new.login(&o).expect("the reinstating login succeeds");
    assert!(
        old.closed_within(Duration::from_secs(5)),
        "the old session's connection is closed"
    );
    let r = new.scsi(0, &TUR, &[], 0).unwrap();
    assert_eq!(r.status, 2);
    assert_eq!(r.sense_key(), (6, 0x29, 0x07), "I_T NEXUS LOSS OCCURRED");
    assert_eq!(new.scsi(0, &TUR, &[], 0).unwrap().status, 0);
}

#[test]
fn abort_of_an_unknown_task_is_function_complete() {
    let d = Daemon::start("abort");
    let mut c = Conn::connect(d.addr);
    c.login(&LoginOptions::new(IQN)).unwrap();
    assert_eq!(c.tmf(1, 0, 0x4242).unwrap(), 0);
    assert_eq!(c.tmf(5, 0, 0).unwrap(), 0, "LOGICAL UNIT RESET");
    assert_eq!(
        c.tmf(5, 9, 0).unwrap(),
        2,
        "LUN RESET of a missing LUN: LUN does not exist"
    );
}

#[test]
fn sigterm_with_io_in_flight_asks_for_logout_and_exits_cleanly() {
    let mut d = Daemon::start("sigterm");
    let addr = d.addr;
    let worker = std::thread::spawn(move || {
        let mut c = Conn::connect(addr);
        c.login(&LoginOptions::new(IQN)).unwrap();
        let _ = c.scsi(0, &TUR, &[], 0);
        let data = vec![0x5au8; 64 * 1024];
        let mut writes = 0;
        for i in 0..10_000u32 {
            match c.scsi(0, &write10(i % 1000 * 128, 128), &data, 0) {
                Ok(r) if r.status == 0 => writes += 1,
                _ => break,
            }
            if c.async_messages.contains(&1) {
                let _ = c.logout();
                break;
            }
        }
        (writes, c.async_messages.clone())
    });
    std::thread::sleep(Duration::from_millis(500));
    let status = d.terminate().expect("ringsand exits after SIGTERM");
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        d.log_text()
    );
    let (writes, asyncs) = worker.join().unwrap();
    assert!(writes > 0, "I/O was in flight");
    assert!(
        asyncs.contains(&1),
        "the initiator was asked to log out (Async Message event 1)"
    );
}

#[test]
fn idle_connections_are_pinged_and_dead_ones_closed() {
    use ringsan::iscsi::pdu::{NopOut, Response};
    let d = Daemon::start_daemon_opts("nop", "nop_interval_seconds = 1");
    let mut c = Conn::connect(d.addr);
    c.login(&LoginOptions::new(IQN)).unwrap();
    // Answer the first ping: the connection stays.
    let (bhs, _) = c.recv().unwrap();
    let ping = match Response::decode(&bhs).unwrap() {
        Response::NopIn(n) => n,
        other => panic!("expected a NOP-In ping, got {other:?}"),
    };
    assert_eq!(ping.itt, 0xffff_ffff);
    assert_ne!(
        ping.ttt, 0xffff_ffff,
        "a ping asks for an answer with its TTT"
    );
    let answer = NopOut {
        immediate: true,
        data_len: 0,
        lun: 0,
        itt: 0xffff_ffff,
        ttt: ping.ttt,
        cmdsn: c.cmdsn,
        exp_statsn: c.exp_statsn,
    };
    c.send(&answer.encode(), &[]).unwrap();
    assert_eq!(c.ping(b"alive").unwrap(), b"alive");
    // Stop answering: the target gives up within a few intervals.
    assert!(
        c.closed_within(Duration::from_secs(8)),
        "an unanswered ping closes the connection"
    );
    assert!(d.log_text().contains("unanswered"), "{}", d.log_text());
}

#[test]
fn lun_reset_from_another_initiator_aborts_my_stalled_write() {
    use ringsan::iscsi::pdu::Response;
    let d = Daemon::start("lun-reset-cross");
    let mut a = Conn::connect(d.addr);
    let mut oa = LoginOptions::new(IQN);
    oa.immediate_data = false;
    oa.initial_r2t = true;
    a.login(&oa).unwrap();
    let _ = a.scsi(0, &TUR, &[], 0);
    // A write that waits for its R2T data, which A never sends.
    let itt = a.send_command(0, &write10(0, 8), true, 4096, &[]).unwrap();
    match a.recv_response().unwrap().0 {
        Response::R2t(r) => assert_eq!(r.itt, itt),
        other => panic!("expected an R2T, got {other:?}"),
    }
    let mut b = Conn::connect(d.addr);
    let mut ob = LoginOptions::new(IQN);
    ob.initiator = "iqn.2026-11.io.ringsan:other-host".into();
    b.login(&ob).unwrap();
    assert_eq!(b.tmf(5, 0, 0).unwrap(), 0, "LOGICAL UNIT RESET completes");
    // TAS=1 (the default): A's write completes with TASK ABORTED.
    match a.recv_response().unwrap() {
        (Response::ScsiResponse(r), _) => {
            assert_eq!(r.itt, itt);
            assert_eq!(r.status, 0x40, "TASK ABORTED");
        }
        (other, _) => panic!("expected A's write to end, got {other:?}"),
    }
    let r = a.scsi(0, &TUR, &[], 0).unwrap();
    assert_eq!(
        r.sense_key(),
        (6, 0x29, 0x03),
        "BUS DEVICE RESET FUNCTION OCCURRED"
    );
}

#[test]
fn the_cmdsn_window_follows_the_free_buffers() {
    use ringsan::iscsi::pdu::Response;
    // 16 buffers per reactor: the window can never be wider than that.
    let d = Daemon::start_daemon_opts("window", "buffer_count = 16");
    let mut c = Conn::connect(d.addr);
    c.login(&LoginOptions::new(IQN)).unwrap();
    c.send_command(0, &[0u8; 6], false, 0, &[]).unwrap();
    match c.recv_response().unwrap().0 {
        Response::ScsiResponse(r) => {
            let window = r.max_cmdsn.wrapping_sub(r.exp_cmdsn).wrapping_add(1);
            assert!(
                (1..=16).contains(&window),
                "window {window} with 16 buffers"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn out_of_space_is_data_protect_space_allocation_failed() {
    // A 64 MiB sparse LUN on a 1 MiB tmpfs: the file system fills up long before the LUN does.
    let dir = common::scratch("enospc");
    let mnt = dir.join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        mounted,
        "mounting a small tmpfs needs root (the test command runs as root)"
    );
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.join("ringsan.toml");
    let text = common::config_text(&mnt, port, &[(0, "64M", 512)], "");
    std::fs::write(&cfg, text).unwrap();
    let d = Daemon::spawn(dir, cfg, port);
    let mut c = Conn::connect(d.addr);
    c.login(&LoginOptions::new(IQN)).unwrap();
    let _ = c.scsi(0, &TUR, &[], 0);
    let data = vec![0xa5u8; 256 * 1024];
    let mut failed = None;
    for i in 0..16u32 {
        let r = c.scsi(0, &write10(i * 512, 512), &data, 0).unwrap();
        if r.status != 0 {
            failed = Some(r);
            break;
        }
    }
    let r = failed.expect("writing 4 MiB into a 1 MiB file system must fail");
    assert_eq!(r.status, 2);
    assert_eq!(
        r.sense_key(),
        (7, 0x27, 0x07),
        "DATA PROTECT / SPACE ALLOCATION FAILED WRITE PROTECT"
    );
}

#[test]
fn acknowledged_writes_survive_sigkill_and_restart() {
    let mut d = Daemon::start("sigkill");
    let data: Vec<u8> = (0..64 * 1024).map(|i| (i % 253) as u8).collect();
    {
        let mut c = Conn::connect(d.addr);
        c.login(&LoginOptions::new(IQN)).unwrap();
        let _ = c.scsi(0, &TUR, &[], 0);
        let w = c.scsi(0, &write10(2048, 128), &data, 0).unwrap();
        assert_eq!(w.status, 0, "the write is acknowledged");
    }
    let (dir, port) = (d.dir.clone(), d.addr.port());
    if let Some(mut child) = d.child.take() {
        child.kill().unwrap(); // SIGKILL: no shutdown path runs
        child.wait().unwrap();
    }
    let mut d2 = Daemon::spawn(dir.clone(), dir.join("ringsan.toml"), port);
    let mut c = Conn::connect(d2.addr);
    if let Err(e) = c.login(&LoginOptions::new(IQN)) {
        std::thread::sleep(Duration::from_millis(500));
        panic!(
            "login after restart: {e}; alive {}; log:\n{}",
            d2.alive(),
            d2.log_text()
        );
    }
    let _ = c.scsi(0, &TUR, &[], 0);
    let r = c
        .scsi(0, &read10(2048, 128), &[], data.len() as u32)
        .unwrap();
    assert_eq!(r.status, 0);
    assert!(
        r.data == data,
        "an acknowledged write was lost across SIGKILL"
    );
}

#[test]
fn a_long_sendtargets_answer_comes_in_pieces() {
    use ringsan::iscsi::pdu::{Response, TextRequest};
    let dir = common::scratch("sendtargets");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut text = format!(
        "[daemon]\ndata_dir = \"{}\"\nreactors = 1\nbuffer_count = 16\ncontrol_socket = \"{}/control.sock\"\nportals = [\"127.0.0.1:{port}\"]\n",
        dir.display(),
        dir.display()
    );
    for i in 0..200 {
        text.push_str(&format!("\n[[target]]\niqn = \"iqn.2026-11.io.ringsan:a-rather-long-target-name-number-{i:04}\"\n"));
    }
    let cfg = dir.join("ringsan.toml");
    std::fs::write(&cfg, text).unwrap();
    let d = Daemon::spawn(dir, cfg, port);
    let mut c = Conn::connect(d.addr);
    let keys: Vec<(String, String)> = [
        ("InitiatorName", "iqn.2026-11.io.ringsan:discoverer"),
        ("SessionType", "Discovery"),
        ("MaxRecvDataSegmentLength", "8192"),
        ("HeaderDigest", "None"),
        ("DataDigest", "None"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    c.login_keys([0x80, 0, 0, 0, 0, 9], &keys, false, false)
        .unwrap();
    let mut body = Vec::new();
    let mut ttt = 0xffff_ffff;
    let mut request = b"SendTargets=All\0".to_vec();
    let mut pieces = 0;
    loop {
        let itt = c.next_itt();
        let t = TextRequest {
            immediate: true,
            final_flag: true,
            cont: false,
            data_len: request.len() as u32,
            lun: 0,
            itt,
            ttt,
            cmdsn: c.cmdsn,
            exp_statsn: c.exp_statsn,
        };
        c.send(&t.encode(), &request).unwrap();
        let (r, data) = c.recv_response().unwrap();
        let Response::Text(r) = r else {
            panic!("expected a Text Response, got {r:?}")
        };
        assert!(
            data.len() <= 8192,
            "a piece is no longer than our MaxRecvDataSegmentLength"
        );
        body.extend_from_slice(&data);
        pieces += 1;
        if r.final_flag {
            assert_eq!(r.ttt, 0xffff_ffff);
            break;
        }
        assert!(
            r.cont && r.ttt != 0xffff_ffff,
            "more pieces: C=1 and a TTT to ask with"
        );
        ttt = r.ttt;
        request.clear();
        assert!(pieces < 100, "bounded");
    }
    assert!(pieces > 1, "the answer was long enough to need pieces");
    let text = String::from_utf8_lossy(&body);
    assert_eq!(
        text.matches("TargetName=").count(),
        200,
        "every target listed once"
    );
    assert!(text.contains("number-0199"));
}
