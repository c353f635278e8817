//! Access control with real initiators: CHAP and mutual CHAP through libiscsi's URL credentials
//! (`iscsi://user%secret@host/...`), and initiator ACLs (a name not on the list cannot log in).

mod common;

use std::process::Command;
use std::time::Duration;

use common::{require, run, Daemon, IQN};

const T: Duration = Duration::from_secs(30);
const ALLOWED: &str = "iqn.2026-11.io.ringsan:allowed";

fn inq(d: &Daemon, initiator: &str, credentials: &str) -> (bool, String) {
    let url = format!("iscsi://{credentials}{}/{IQN}/0", d.addr);
    run(
        Command::new("iscsi-inq").arg("-i").arg(initiator).arg(url),
        T,
    )
}

#[test]
fn acl_admits_listed_initiators_only() {
    require("iscsi-inq", "libiscsi-bin");
    let d = Daemon::start_with(
        "acl",
        &[(0, "8M", 512)],
        &format!("allow = [\"{ALLOWED}\"]"),
    );
    let (ok, out) = inq(&d, ALLOWED, "");
    assert!(ok, "listed initiator: {out}");
    let (ok, out) = inq(&d, "iqn.2026-11.io.ringsan:intruder", "");
    assert!(!ok, "an unlisted initiator must not log in: {out}");
    assert!(
        d.log_text().contains("0x0202") || d.log_text().to_lowercase().contains("authoriz"),
        "the refusal is logged:\n{}",
        d.log_text()
    );
}

#[test]
fn chap_is_required_and_checked() {
    require("iscsi-inq", "libiscsi-bin");
    let d = Daemon::start_with(
        "chap",
        &[(0, "8M", 512)],
        "chap = { user = \"dom0\", secret = \"correct-horse-battery\" }",
    );
    let (ok, out) = inq(&d, ALLOWED, "dom0%correct-horse-battery@");
    assert!(ok, "right secret: {out}\n{}", d.log_text());
    let (ok, _) = inq(&d, ALLOWED, "dom0%wrong-secret-here@");
    assert!(!ok, "a wrong secret must fail");
    let (ok, _) = inq(&d, ALLOWED, "");
    assert!(!ok, "no credentials must fail when CHAP is configured");
    assert!(
        !d.log_text().contains("correct-horse-battery"),
        "secrets never reach the log"
    );
}

#[test]
fn mutual_chap_proves_the_target_too() {
    require("iscsi-inq", "libiscsi-bin");
    let d = Daemon::start_with(
        "mutual",
        &[(0, "8M", 512)],
        "chap = { user = \"dom0\", secret = \"correct-horse-battery\" }\nmutual_chap = { user = \"ringsan\", secret = \"target-secret-42\" }",
    );
    let base = format!("iscsi://dom0%correct-horse-battery@{}/{IQN}/0", d.addr);
    let (ok, out) = run(
        Command::new("iscsi-inq")
            .arg("-i")
            .arg(ALLOWED)
            .arg(format!(
                "{base}?target_user=ringsan&target_password=target-secret-42"
            )),
        T,
    );
    assert!(
        ok,
        "mutual CHAP with the right target secret: {out}\n{}",
        d.log_text()
    );
    let (ok, _) = run(
        Command::new("iscsi-inq")
            .arg("-i")
            .arg(ALLOWED)
            .arg(format!(
                "{base}?target_user=ringsan&target_password=not-the-secret"
            )),
        T,
    );
    assert!(
        !ok,
        "the initiator must refuse a target that cannot prove itself"
    );
}
