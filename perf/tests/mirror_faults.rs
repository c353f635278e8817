//! Fault tests of a mirrored volume over real processes: two `ringsand` on 127.0.0.2 and
//! 127.0.0.3 (see `common/pair.rs`), `ringsan-perf --verify` as the initiator (it fails over
//! between the two portals as dm-multipath does), `target-admin volume` to promote and read the
//! state. After each fault: no acknowledged write lost (every read checks the last completed
//! write of its block), the copies byte-for-byte identical once resynced, and the resync copied
//! what the bitmap and activity log said (counted by both ends) and no more.

mod common;

use std::time::Duration;

use common::pair::*;
use common::scratch;

/// The load's region: 8 MiB, two activity-log extents of 4 MiB.
const REGION: &str = "8m";
const REGION_BYTES: u64 = 8 << 20;

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[test]
fn protocol_c_and_a_secondary_serves_nothing() {
    let _serial = serial();
    let root = scratch("mirror-basic");
    let mut p = Pair::start_with_a_primary(&root);
    let s = p.a.status();
    assert_eq!(s["role"], "Primary");
    assert_eq!(s["peer_role"], "Secondary");
    let (ok, text) = p.a.admin(&["volume", "status"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("role:Primary") && text.contains("replication:Established"),
        "drbdadm-like text: {text}"
    );
    // The replication state is exported for dashboards.
    let metrics = p.a.metrics_text();
    let l = format!("target=\"{MIQN}\",lun=\"0\"");
    for line in [
        format!("ringsan_mirror_role{{{l},state=\"Primary\"}} 1"),
        format!("ringsan_mirror_connection_state{{{l},state=\"Connected\"}} 1"),
        format!("ringsan_mirror_disk_state{{{l},state=\"UpToDate\"}} 1"),
        format!("ringsan_mirror_out_of_sync_bytes{{{l}}} 0"),
    ] {
        assert!(metrics.lines().any(|x| x == line), "{line} in:\n{metrics}");
    }
    // A new volume on two new sparse files starts in sync: nothing copied.
    assert_eq!(Node::u64(&s, "resync_sent_bytes"), 0);
    // The Secondary's portal reports the LUN unavailable: a run there cannot start.
    let out = std::process::Command::new(common::PERF)
        .args(["run", "--url", &p.b.url(), "--runtime", "1", "--quiet"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("04/0c"), "NOT READY, unavailable: {text}");
    Load::start(&root, &[p.a.url()], "randrw", REGION, 3).finish();
    // The session was placed on the volume's reactor (no hand-off per command).
    let log = p.a.log_text();
    let reactor_of = |what: &str| {
        log.lines()
            .find(|l| l.contains(what))
            .and_then(|l| l.split("reactor{index=").nth(1))
            .and_then(|r| r.split('}').next())
            .map(str::to_string)
    };
    let home = reactor_of("ringsan_engine::mirror");
    assert!(home.is_some(), "the mirror logs on its reactor: {log}");
    assert_eq!(reactor_of("session logged in"), home, "{log}");

    // A block changed behind the mirror's back on B: online verify finds it and, asked to,
    // copies it back from the Primary.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(p.b.data())
            .unwrap();
        f.write_all_at(&[0xA5; 4096], 40 << 20).unwrap();
        f.sync_all().unwrap();
    }
    let (ok, text) = p.a.admin(&["volume", "verify", VOLUME, "--resync"]);
    assert!(ok, "{text}");
    let s =
        p.a.wait_for("verify done", |s| Node::u64(s, "verifies_done") == 1);
    // Verify compares 256 KiB ranges: the one holding the changed block differs.
    let differing = Node::u64(&s, "verify_differing_bytes");
    assert_eq!(differing, 256 << 10, "{s:#}");
    let s = p.a.wait_for("the difference resynced", |s| {
        Node::u64(s, "resyncs_done") == 1 && s["out_of_sync_bytes"] == 0
    });
    assert_eq!(
        Node::u64(&s, "resync_sent_bytes"),
        differing,
        "only the differing range"
    );
    p.a.wait_synced();
    p.stop_and_compare();
}

#[test]
fn sigkill_of_the_primary_under_load_then_the_secondary_is_promoted() {
    let _serial = serial();
    let root = scratch("mirror-kill-primary");
    let mut p = Pair::start_with_a_primary(&root);
    let load = Load::start(&root, &[p.a.url(), p.b.url()], "randrw", REGION, 7);
    sleep_ms(2000);
    p.a.kill();
    sleep_ms(300);
    p.b.promote(false);
    let r = load.finish();
    assert!(!r.reconnects.is_empty(), "the load failed over to B");
    // A comes back as Secondary; B (Primary since) is its sync source: B's writes since the
    // promotion (its bitmap) and A's activity log (A crashed as Primary) are copied, all inside
    // the region the load used.
    p.a.start();
    let s = p.b.wait_synced();
    let sent = Node::u64(&s, "resync_sent_bytes");
    let got = Node::u64(&p.a.status(), "resync_received_bytes");
    assert_eq!(sent, got, "both ends count the same bytes");
    assert!(sent > 0, "B's writes since the promotion are copied");
    assert!(sent <= REGION_BYTES, "only the marked blocks: {sent} bytes");
    p.stop_and_compare();
}

#[test]
fn sigkill_of_the_secondary_under_load_resyncs_only_what_it_missed() {
    let _serial = serial();
    let root = scratch("mirror-kill-secondary");
    let mut p = Pair::start_with_a_primary(&root);
    let load = Load::start(&root, &[p.a.url()], "randrw", REGION, 6);
    sleep_ms(1500);
    p.b.kill();
    sleep_ms(1500);
    let s = p.a.status();
    assert_eq!(s["connection"], "Connecting");
    assert!(
        Node::u64(&s, "out_of_sync_bytes") > 0,
        "A records what B misses: {s}"
    );
    p.b.start();
    let r = load.finish();
    assert!(r.reconnects.is_empty(), "the Primary never stopped serving");
    let s = p.a.wait_synced();
    let sent = Node::u64(&s, "resync_sent_bytes");
    assert!(sent > 0 && sent <= REGION_BYTES, "{sent} bytes resynced");
    p.stop_and_compare();
}

#[test]
fn a_pulled_cable_degrades_then_resyncs_while_the_load_goes_on() {
    let _serial = serial();
    let root = scratch("mirror-cable");
    let mut p = Pair::start_with_a_primary(&root);
    let load = Load::start(&root, &[p.a.url()], "randrw", REGION, 7);
    sleep_ms(1500);
    p.relay.freeze();
    // Writes wait at most the link timeout (1 s), then A goes on alone and marks them.
    p.a.wait_for("degraded", |s| {
        s["connection"] == "Connecting" && Node::u64(s, "out_of_sync_bytes") > 0
    });
    sleep_ms(1500);
    p.relay.restore();
    let r = load.finish();
    assert!(
        r.reconnects.is_empty(),
        "the Primary kept serving: {:?}",
        r.reconnects
    );
    let s = p.a.wait_synced();
    let sent = Node::u64(&s, "resync_sent_bytes");
    assert!(sent > 0 && sent <= REGION_BYTES, "{sent} bytes resynced");
    p.stop_and_compare();
}

#[test]
fn kills_during_a_resync_resume_it_and_end_identical() {
    let _serial = serial();
    let root = scratch("mirror-kill-resync");
    let slow = Options {
        resync_rate: 8 << 20,
        ..Options::default()
    };
    let mut p = Pair::new(&root, slow.clone(), slow);
    p.a.start();
    p.b.start();
    p.a.wait_synced();
    p.a.promote(false);
    let written = 24u64 << 20;
    let degrade = |p: &mut Pair| {
        // B away (cleanly) while A rewrites the first 24 MiB: 3 s of resync at 8 MiB/s.
        p.b.terminate();
        Load::start_bs(&root, &[p.a.url()], "write", "128k", "24m", 2).finish();
        let marked = Node::u64(&p.a.status(), "out_of_sync_bytes");
        assert_eq!(marked, written, "every block written alone is marked");
        p.b.start();
        p.b.wait_for("resync under way", |s| s["connection"] == "SyncTarget");
        sleep_ms(1500);
    };

    // The target killed mid-resync: on its return the resync resumes where it stopped, so the
    // source sends what was marked plus at most the requests in flight at the kill (a restart
    // from the beginning would send the 12 MiB copied before the kill again).
    degrade(&mut p);
    p.b.kill();
    p.b.start();
    let s = p.a.wait_synced();
    let sent = Node::u64(&s, "resync_sent_bytes");
    assert!(
        sent >= written && sent <= written + (4 << 20),
        "resync sent {sent} bytes for {written} marked"
    );

    // The source (the Primary) killed mid-resync: it comes back as a crashed Primary, its
    // activity log (the 24 MiB written) is marked again and copied from it, nothing beyond.
    degrade(&mut p);
    p.a.kill();
    p.a.start();
    p.a.wait_for("reconnected as the source", |s| {
        s["connection"] == "SyncSource" || s["connection"] == "Connected"
    });
    p.a.promote(false);
    let s = p.a.wait_synced();
    let sent = Node::u64(&s, "resync_sent_bytes");
    assert!(sent > 0 && sent <= written, "resync sent {sent} bytes");
    // And the volume serves verified I/O after all that.
    Load::start(&root, &[p.a.url()], "randrw", REGION, 2).finish();
    p.stop_and_compare();
}

#[test]
fn both_nodes_killed_and_restarted_in_either_order_lose_nothing() {
    let _serial = serial();
    let root = scratch("mirror-kill-both");
    let mut p = Pair::start_with_a_primary(&root);
    for b_first in [true, false] {
        let load = Load::start(&root, &[p.a.url(), p.b.url()], "randrw", REGION, 8);
        sleep_ms(2000);
        p.a.kill();
        p.b.kill();
        sleep_ms(500);
        if b_first {
            p.b.start();
            p.a.start();
        } else {
            p.a.start();
            p.b.start();
        }
        p.a.wait_for("reconnected", |s| {
            s["connection"] == "Connected" || s["connection"] == "SyncSource"
        });
        p.a.promote(false);
        // The run reconnects and every read still finds the last acknowledged write.
        let r = load.finish();
        assert!(!r.reconnects.is_empty());
        p.a.wait_synced();
    }
    p.stop_and_compare();
}

#[test]
fn split_brain_is_detected_never_merged_and_resolved_by_the_admin() {
    let _serial = serial();
    let root = scratch("mirror-split");
    let mut p = Pair::start_with_a_primary(&root);
    p.relay.freeze();
    p.b.wait_for("link lost", |s| s["connection"] == "Connecting");
    // Both sides promoted and written while apart.
    p.b.promote(false);
    Load::start(&root, &[p.a.url()], "write", "1m", 1).finish();
    Load::start(&root, &[p.b.url()], "write", "1m", 1).finish();
    p.relay.restore();
    let s = p.a.wait_for("split brain", |s| s["split_brain"] == true);
    assert_eq!(s["connection"], "StandAlone");
    let text = s["text"].as_str().unwrap_or_default();
    assert!(text.contains("split-brain"), "the admin is told: {text}");
    p.b.wait_for("split brain", |s| {
        s["split_brain"] == true && s["connection"] == "StandAlone"
    });
    // Refused without --force; B gives up its changes, A's survive.
    let (ok, text) = p.b.admin(&["volume", "discard-my-data", VOLUME]);
    assert!(!ok && text.contains("--force"), "{text}");
    let (ok, text) = p.b.admin(&["volume", "demote", VOLUME]);
    assert!(ok, "{text}");
    let (ok, text) = p.b.admin(&["volume", "discard-my-data", VOLUME, "--force"]);
    assert!(ok, "{text}");
    let (ok, text) = p.a.admin(&["volume", "connect", VOLUME]);
    assert!(ok, "{text}");
    p.a.wait_synced();
    p.stop_and_compare();
}

#[test]
fn a_peer_with_the_wrong_secret_is_refused() {
    let _serial = serial();
    let root = scratch("mirror-secret");
    let wrong = Options {
        secret: "not-the-same-secret-at-all".into(),
        ..Options::default()
    };
    let mut p = Pair::new(&root, Options::default(), wrong);
    p.a.start();
    p.b.start();
    sleep_ms(2500);
    assert_eq!(p.a.status()["connection"], "Connecting");
    assert_eq!(p.b.status()["connection"], "Connecting");
    let logs = p.a.log_text() + &p.b.log_text();
    assert!(
        logs.contains("secret") || logs.contains("authentic"),
        "the refusal is logged: {logs}"
    );
}

#[test]
fn a_volume_over_existing_data_waits_for_the_admin_then_syncs_in_full() {
    let _serial = serial();
    let root = scratch("mirror-existing");
    let mut p = Pair::new(&root, Options::default(), Options::default());
    // Different data on the two nodes before the volume is made mirrored.
    for (node, byte) in [(&p.a, 0x11u8), (&p.b, 0x22u8)] {
        std::fs::write(node.data(), vec![byte; SIZE as usize]).unwrap();
    }
    p.a.start();
    p.b.start();
    // Connected, both Inconsistent: nothing is served, nothing copied until the admin chooses.
    let s =
        p.a.wait_for("connected", |s| s["connection"] == "Connected");
    assert_eq!(s["disk"], "Inconsistent");
    assert_eq!(s["peer_disk"], "Inconsistent");
    let (ok, text) = p.a.admin(&["volume", "promote", VOLUME]);
    assert!(
        !ok,
        "an Inconsistent copy is not promoted without --force: {text}"
    );
    p.a.promote(true);
    let s = p.a.wait_synced();
    assert_eq!(
        Node::u64(&s, "resync_sent_bytes"),
        SIZE,
        "a full sync from A"
    );
    Load::start(&root, &[p.a.url()], "randrw", REGION, 2).finish();
    p.stop_and_compare();
    let b = std::fs::read(p.b.data()).unwrap();
    assert_eq!(b[SIZE as usize - 1], 0x11, "A's data won");
}
