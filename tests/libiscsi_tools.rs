//! The real daemon against real initiators: libiscsi's command-line tools (iscsi-ls,
//! iscsi-inq, iscsi-readcapacity16) and QEMU's libiscsi block driver (qemu-img) writing data
//! and reading it back, alone and from several sessions at once.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{require, run, Daemon, IQN};

const T: Duration = Duration::from_secs(60);

#[test]
fn iscsi_ls_discovers_the_target_and_its_luns() {
    require("iscsi-ls", "libiscsi-bin");
    let d = Daemon::start_with("ls", &[(0, "16M", 512), (3, "8M", 4096)], "");
    let (ok, out) = run(
        Command::new("iscsi-ls")
            .arg("-s")
            .arg(format!("iscsi://{}", d.addr)),
        T,
    );
    assert!(ok, "{out}\n{}", d.log_text());
    assert!(out.contains(IQN), "{out}");
    assert!(out.contains("Lun:0") && out.contains("Lun:3"), "{out}");
    assert!(out.contains("Type:DIRECT_ACCESS"), "{out}");
}

#[test]
fn iscsi_inq_reports_identity_and_vpd_pages() {
    require("iscsi-inq", "libiscsi-bin");
    let d = Daemon::start("inq");
    let (ok, out) = run(Command::new("iscsi-inq").arg(d.url(0)), T);
    assert!(ok, "{out}\n{}", d.log_text());
    assert!(out.contains("RINGSAN"), "{out}");
    let (ok, out) = run(
        Command::new("iscsi-inq")
            .arg("-e")
            .arg("1")
            .arg("-c")
            .arg("128")
            .arg(d.url(0)),
        T,
    );
    assert!(ok, "{out}");
    assert!(out.contains("Unit Serial Number:["), "{out}");
    let (ok, out) = run(
        Command::new("iscsi-inq")
            .arg("-e")
            .arg("1")
            .arg("-c")
            .arg("131")
            .arg(d.url(0)),
        T,
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("(3) NAA")
            && out.contains("TARGET_PORT_GROUP")
            && out.contains("RELATIVE_TARGET_PORT"),
        "{out}"
    );
}

#[test]
fn readcapacity16_reports_size_and_block_size() {
    require("iscsi-readcapacity16", "libiscsi-bin");
    let d = Daemon::start_with("rc16", &[(0, "64M", 4096)], "");
    let (ok, out) = run(Command::new("iscsi-readcapacity16").arg(d.url(0)), T);
    assert!(ok, "{out}");
    assert!(
        out.contains("Logical Block Length:4096") || out.contains("4096"),
        "{out}"
    );
    // 64 MiB of 4096-byte blocks: last LBA 16383.
    assert!(out.contains("16383") || out.contains("16384"), "{out}");
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut x = seed as u32 | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Writes `data` to the LUN at `url` with qemu-img and reads the whole LUN back, through files
/// in `dir` named after `tag`; returns the bytes read, or qemu-img's output when it failed.
fn qemu_round_trip(
    url: &str,
    dir: &std::path::Path,
    tag: &str,
    data: &[u8],
) -> Result<Vec<u8>, String> {
    let src = dir.join(format!("src-{tag}.bin"));
    let back = dir.join(format!("back-{tag}.bin"));
    std::fs::write(&src, data).map_err(|e| e.to_string())?;
    let (ok, out) = run(
        Command::new("qemu-img")
            .args(["convert", "-n", "-f", "raw", "-O", "raw"])
            .arg(&src)
            .arg(url),
        T,
    );
    if !ok {
        return Err(format!("write: {out}"));
    }
    let (ok, out) = run(
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "raw"])
            .arg(url)
            .arg(&back),
        T,
    );
    if !ok {
        return Err(format!("read: {out}"));
    }
    std::fs::read(&back).map_err(|e| e.to_string())
}

#[test]
fn data_written_with_qemu_img_reads_back() {
    require("qemu-img", "qemu-utils");
    let d = Daemon::start_with("qemu", &[(0, "16M", 512)], "");
    let data = pattern(16 << 20, 7);
    let got = qemu_round_trip(&d.url(0), &d.dir, "lun0", &data)
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log_text()));
    assert_eq!(got.len(), data.len());
    assert!(got == data, "data read back differs from data written");
    // The backing file holds the same bytes: the write really reached the disk.
    assert!(std::fs::read(d.dir.join("lun0.img")).unwrap() == data);
}

#[test]
fn several_sessions_at_once() {
    require("qemu-img", "qemu-utils");
    let d = Daemon::start_with(
        "multi",
        &[
            (0, "8M", 512),
            (1, "8M", 512),
            (2, "8M", 512),
            (3, "8M", 512),
        ],
        "",
    );
    let threads: Vec<_> = (0..4u16)
        .map(|lun| {
            let url = d.url(lun);
            let dir = d.dir.clone();
            std::thread::spawn(move || {
                let data = pattern(8 << 20, lun as u8 + 1);
                let got = qemu_round_trip(&url, &dir, &format!("lun{lun}"), &data)
                    .unwrap_or_else(|e| panic!("LUN {lun}: {e}"));
                assert!(got == data, "LUN {lun} read back wrong data");
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn header_digests_with_qemu_img() {
    require("qemu-img", "qemu-utils");
    let d = Daemon::start_with("hdigest-qemu", &[(0, "4M", 512)], "");
    let opts = format!(
        "driver=iscsi,transport=tcp,portal={},target={IQN},lun=0,header-digest=crc32c",
        d.addr
    );
    let src = d.dir.join("src.bin");
    let back = d.dir.join("back.bin");
    let data = pattern(4 << 20, 3);
    std::fs::write(&src, &data).unwrap();
    let (ok, out) = run(
        Command::new("qemu-img")
            .args(["convert", "-n", "-f", "raw"])
            .arg(&src)
            .arg("--target-image-opts")
            .arg(&opts),
        T,
    );
    assert!(ok, "write: {out}\n{}", d.log_text());
    let (ok, out) = run(
        Command::new("qemu-img")
            .args(["convert", "--image-opts"])
            .arg(&opts)
            .args(["-O", "raw"])
            .arg(&back),
        T,
    );
    assert!(ok, "read: {out}\n{}", d.log_text());
    assert!(
        std::fs::read(&back).unwrap() == data,
        "data read back with header digests differs"
    );
    assert!(
        d.log_text().contains("header_digest=true"),
        "CRC32C header digests were negotiated:\n{}",
        d.log_text()
    );
}

#[test]
fn several_targets_each_with_its_portal_group_tag() {
    require("iscsi-ls", "libiscsi-bin");
    let dir = common::scratch("targets");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.join("ringsan.toml");
    let text = format!(
        "[daemon]\ndata_dir = \"{}\"\nreactors = 2\nbuffer_count = 32\ncontrol_socket = \"{}/control.sock\"\nportals = [\"127.0.0.1:{port}\"]\n\n\
         [[target]]\niqn = \"iqn.2026-11.io.ringsan:alpha\"\ntpgt = 7\n[[target.lun]]\nlun = 0\npath = \"a0.img\"\nsize = \"4M\"\n\n\
         [[target]]\niqn = \"iqn.2026-11.io.ringsan:beta\"\ntpgt = 9\n[[target.lun]]\nlun = 2\npath = \"b2.img\"\nsize = \"4M\"\nblock_size = 4096\n",
        dir.display(),
        dir.display()
    );
    std::fs::write(&cfg, text).unwrap();
    let d = Daemon::spawn(dir, cfg, port);
    let (ok, out) = run(
        Command::new("iscsi-ls")
            .arg("-s")
            .arg(format!("iscsi://{}", d.addr)),
        T,
    );
    assert!(ok, "{out}\n{}", d.log_text());
    assert!(
        out.contains(&format!(
            "Target:iqn.2026-11.io.ringsan:alpha Portal:{},7",
            d.addr
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "Target:iqn.2026-11.io.ringsan:beta Portal:{},9",
            d.addr
        )),
        "{out}"
    );
    assert!(out.contains("Lun:2"), "{out}");
    let (ok, out) = run(
        Command::new("iscsi-inq")
            .arg("-e")
            .arg("1")
            .arg("-c")
            .arg("131")
            .arg(format!("iscsi://{}/iqn.2026-11.io.ringsan:beta/2", d.addr)),
        T,
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("iqn.2026-11.io.ringsan:beta,t,0x0009"),
        "the target port name carries the TPGT: {out}"
    );
}

#[test]
fn block_device_backend() {
    require("qemu-img", "qemu-utils");
    require("losetup", "mount");
    let dir = common::scratch("blockdev");
    let backing = dir.join("disk.img");
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let (ok, dev) = run(
        Command::new("losetup").args(["-f", "--show"]).arg(&backing),
        T,
    );
    assert!(ok, "losetup needs root and the loop driver: {dev}");
    let dev = dev.trim().to_string();
    struct Detach(String);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
        }
    }
    let _detach = Detach(dev.clone());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.join("ringsan.toml");
    let text = format!(
        "[daemon]\ndata_dir = \"{}\"\nreactors = 2\nbuffer_count = 32\ncontrol_socket = \"{}/control.sock\"\nportals = [\"127.0.0.1:{port}\"]\n\n[[target]]\niqn = \"{IQN}\"\n[[target.lun]]\nlun = 0\npath = \"{dev}\"\n",
        dir.display(),
        dir.display()
    );
    std::fs::write(&cfg, text).unwrap();
    let d = Daemon::spawn(dir.clone(), cfg, port);
    let data = pattern(16 << 20, 9);
    let got = qemu_round_trip(&d.url(0), &dir, "blockdev", &data)
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log_text()));
    assert!(got == data, "data read back from the block device differs");
    assert!(
        std::fs::read(&backing).unwrap() == data,
        "the data is on the device"
    );
}
