//! `ringsand`: the ringsan iSCSI target daemon.
//!
//! With no arguments it serves the embedded default (target `iqn.2026-11.io.ringsan:demo`, LUN 0
//! a 1 GiB sparse file under `./data`, portal 127.0.0.1:3260, any initiator); with `--config
//! FILE` it serves what the TOML file says. SIGTERM or SIGINT ask initiators to log out, drain
//! in-flight I/O and exit.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use std::sync::Arc;

use ringsan::admin::apply::Control;
use ringsan::config::Config;
use ringsan::daemon::{default_data_dir, Daemon};

/// The ringsan iSCSI target daemon.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// TOML configuration file; without it the embedded demo target is served.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Data folder for the embedded default (ignored with --config).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    // Without --config the embedded default is served; changes made with target-admin are kept
    // in the data folder's ringsand.toml, which is read instead on the next start.
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    let config_path = args
        .config
        .clone()
        .unwrap_or_else(|| data_dir.join("ringsand.toml"));
    let config = if args.config.is_some() || config_path.exists() {
        match Config::load(&config_path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("ringsand: configuration error: {e}");
                std::process::exit(2);
            }
        }
    } else {
        Config::demo(&data_dir)
    };
    let mut signals = Signals::new([SIGTERM, SIGINT]).context("installing signal handlers")?;
    let daemon = match Daemon::start(&config) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("ringsand: {e}");
            std::process::exit(1);
        }
    };
    let control = Arc::new(Control::new(
        daemon.server().clone(),
        config.clone(),
        absolute(&config_path),
    ));
    if let Err(e) = ringsan::admin::server::start(control, &config.control_socket) {
        eprintln!(
            "ringsand: control socket {}: {e}",
            config.control_socket.display()
        );
        daemon.shutdown();
        std::process::exit(1);
    }
    // Metrics are observability, not service: an address in use is logged and the target serves.
    let metrics = config.metrics_address.and_then(|addr| {
        match ringsan::metrics::http::start(daemon.server().clone(), addr) {
            Ok(bound) => {
                tracing::info!("metrics served at http://{bound}/metrics");
                Some(bound)
            }
            Err(e) => {
                tracing::error!(error = %e, "metrics endpoint not started; serving without it");
                None
            }
        }
    });
    print_banner(&config, &daemon, metrics);
    if let Some(sig) = signals.forever().next() {
        tracing::info!(signal = sig, "signal received");
    }
    daemon.shutdown();
    Ok(())
}

fn absolute(path: &std::path::Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}

fn print_banner(config: &Config, daemon: &Daemon, metrics: Option<std::net::SocketAddr>) {
    println!(
        "ringsand {} serving on {:?}",
        env!("CARGO_PKG_VERSION"),
        daemon.portals
    );
    if let Some(addr) = metrics {
        println!("  metrics: http://{addr}/metrics");
    }
    let Some(portal) = daemon.portals.first() else {
        return;
    };
    for t in &config.targets {
        for l in &t.luns {
            println!(
                "  {} LUN {} -> {} ({} byte blocks)",
                t.iqn,
                l.lun,
                l.path.display(),
                l.block_size
            );
        }
    }
    if let Some(t) = config.targets.first() {
        let lun = t.luns.first().map(|l| l.lun).unwrap_or(0);
        println!();
        println!("Log in with libiscsi's tools:");
        println!("  iscsi-ls -s iscsi://{portal}");
        println!("  iscsi-inq iscsi://{portal}/{}/{lun}", t.iqn);
        println!("Or with the Linux initiator:");
        println!("  iscsiadm -m discovery -t sendtargets -p {portal}");
        println!("  iscsiadm -m node -T {} -p {portal} --login", t.iqn);
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
}
