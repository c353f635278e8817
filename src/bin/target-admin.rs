//! `target-admin`: manages a running `ringsand` through its control socket: targets, LUNs, ACLs,
//! CHAP, portals and sessions, as aligned tables or (`--json`) the daemon's data as JSON.
//!
//! The command line lives here; the socket exchange is [`ringsan::admin::client`] and the tables
//! are [`ringsan::admin::format`]. It changes nothing itself: every change is the daemon's, which
//! validates it and persists it. Secrets given on the command line or in a file are never printed
//! back, whatever the daemon answers.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{ArgGroup, Args, CommandFactory, Parser, Subcommand, ValueEnum};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use ringsan::admin::client::{self, ClientError};
use ringsan::admin::format;
use ringsan::admin::protocol::{
    Command, LunInfo, PrInfo, Refusal, Response, SessionInfo, TargetInfo, VolumeInfo,
    DEFAULT_SOCKET,
};

/// Environment variable naming the control socket when `--socket` is not given.
const SOCKET_ENV: &str = "RINGSAN_SOCKET";

/// What `--help` says about exit codes; scripts rely on them.
const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  success
  1  refused by the daemon: invalid argument (the message names it), not found, exists, busy
  2  usage error: bad or missing arguments, unreadable --secret-file, unwritable man --dir
  3  cannot reach the daemon: no socket, permission denied, no answer in 30 s, bad answer
  4  I/O error on the daemon's side (a backing file or its configuration file)

Errors go to stderr as `target-admin: <field>: <message>`. With --json, stdout carries the
daemon's data, or on failure {\"error\": {\"field\": ..., \"message\": ..., \"kind\": ...}}.
A busy refusal means sessions are logged in; --force cuts them.";

const EXIT_OK: u8 = 0;
const EXIT_REFUSED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_UNREACHABLE: u8 = 3;
const EXIT_DAEMON_IO: u8 = 4;

/// Manage a running ringsand iSCSI target.
#[derive(Debug, Parser)]
#[command(
    name = "target-admin",
    version,
    long_about = "Manage a running ringsand iSCSI target through its control socket: targets, \
                  LUNs, ACLs, CHAP, portals and sessions. Every change takes effect at once and \
                  is written to the daemon's configuration file.",
    after_help = "Exit status: 0 ok, 1 refused, 2 usage, 3 daemon unreachable, 4 daemon I/O error \
                  (--help says more).",
    after_long_help = EXIT_STATUS_HELP
)]
struct Cli {
    /// The daemon's control socket [env: RINGSAN_SOCKET] [default: /run/ringsand/control.sock]
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print the daemon's data as JSON (on failure: {"error": {...}})
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Top,
}

#[derive(Debug, Subcommand)]
enum Top {
    /// Create, list and delete targets
    Target {
        #[command(subcommand)]
        command: TargetCmd,
    },
    /// Create, list, show, resize and delete LUNs
    Lun {
        #[command(subcommand)]
        command: LunCmd,
    },
    /// Initiators allowed to log in to a target (an empty list allows any)
    Acl {
        #[command(subcommand)]
        command: AclCmd,
    },
    /// Authentication of initiators (and of the target, mutual CHAP)
    Auth {
        #[command(subcommand)]
        command: AuthCmd,
    },
    /// Listening addresses
    Portal {
        #[command(subcommand)]
        command: PortalCmd,
    },
    /// Logged-in sessions
    Session {
        #[command(subcommand)]
        command: SessionCmd,
    },
    /// SCSI-3 persistent reservations of a LUN
    Pr {
        #[command(subcommand)]
        command: PrCmd,
    },
    /// Mirrored volumes: replication status (like drbdadm status), roles, verify, resync,
    /// split-brain resolution. A volume is named IQN/LUN
    Volume {
        #[command(subcommand)]
        command: VolumeCmd,
    },
    /// Shell completions and man pages (needs no daemon)
    Generate {
        #[command(subcommand)]
        command: GenerateCmd,
    },
}

#[derive(Debug, Subcommand)]
enum TargetCmd {
    /// Create a target
    Create {
        /// iSCSI name (iqn.YYYY-MM.reversed.domain:name, eui. or naa.)
        #[arg(long)]
        iqn: String,
        /// Target portal group tag [default: 1]
        #[arg(long, value_name = "N")]
        tpgt: Option<u16>,
        /// TargetAlias shown to initiators
        #[arg(long, value_name = "A")]
        alias: Option<String>,
    },
    /// List targets
    List,
    /// Delete a target and its LUNs (backing files stay)
    Delete {
        /// iSCSI name
        #[arg(long)]
        iqn: String,
        /// Cut the sessions logged in to it
        #[arg(long)]
        force: bool,
    },
}

/// Logical block sizes a LUN may have.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum BlockSize {
    #[value(name = "512")]
    B512,
    #[value(name = "4096")]
    B4096,
}

impl BlockSize {
    fn bytes(self) -> u32 {
        match self {
            BlockSize::B512 => 512,
            BlockSize::B4096 => 4096,
        }
    }
}

#[derive(Debug, Subcommand)]
enum LunCmd {
    /// Create a LUN; logged-in initiators see REPORTED LUNS DATA HAS CHANGED
    Create {
        /// Target name
        #[arg(long, value_name = "IQN")]
        target: String,
        /// LUN number
        #[arg(long, value_name = "N")]
        lun: u16,
        /// Backing file or block device; a relative path is taken from the daemon's data_dir.
        /// An existing file is used as it is, a missing one is created sparse (needs --size)
        #[arg(long, value_name = "FILE")]
        path: String,
        /// Size, e.g. 10G, 512M or bytes (binary units); a multiple of the block size
        #[arg(long, value_name = "SIZE")]
        size: Option<String>,
        /// Logical block size [default: 512]
        #[arg(long, value_name = "BYTES")]
        block_size: Option<BlockSize>,
        /// Enable the write cache (WCE=1: writes are durable after SYNCHRONIZE CACHE or FUA)
        #[arg(long)]
        write_cache: bool,
    },
    /// List the LUNs of a target
    List {
        /// Target name
        #[arg(long, value_name = "IQN")]
        target: String,
    },
    /// Show one LUN
    Show(LunAddr),
    /// Grow a LUN; logged-in initiators see CAPACITY DATA HAS CHANGED
    Resize {
        /// Target name
        #[arg(long, value_name = "IQN")]
        target: String,
        /// LUN number
        #[arg(long, value_name = "N")]
        lun: u16,
        /// New size, e.g. 20G
        #[arg(long, value_name = "SIZE")]
        size: String,
        /// Allow shrinking (data past the new end is lost to initiators)
        #[arg(long)]
        force: bool,
    },
    /// Delete a LUN (the backing file stays)
    Delete {
        #[command(flatten)]
        at: LunAddr,
        /// Proceed although sessions are logged in to the target (they are cut)
        #[arg(long)]
        force: bool,
    },
}

/// A LUN of a target.
#[derive(Debug, Args)]
struct LunAddr {
    /// Target name
    #[arg(long, value_name = "IQN")]
    target: String,
    /// LUN number
    #[arg(long, value_name = "N")]
    lun: u16,
}

#[derive(Debug, Subcommand)]
enum PrCmd {
    /// Show registrations (initiator port, target port, key, APTPL), the holder, the type and
    /// PRgeneration
    Show(LunAddr),
    /// Remove every registration and reservation (a stale reservation, or a damaged APTPL state
    /// file that keeps the LUN offline: the file is set aside and the LUN comes back online).
    /// Registered initiators get REGISTRATIONS PREEMPTED
    Clear {
        #[command(flatten)]
        at: LunAddr,
        /// Required: this removes fencing a cluster may rely on
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum VolumeCmd {
    /// Role, disk state, connection, peer, out-of-sync bytes, resync progress and ETA of every
    /// mirrored volume (or of one)
    Status {
        /// IQN/LUN; every volume when absent
        volume: Option<String>,
    },
    /// Make this node Primary: it serves the LUN (refused while the peer is Primary, or when
    /// this copy is not UpToDate unless --force)
    Promote {
        /// IQN/LUN
        volume: String,
        /// Take this copy as UpToDate whatever its state: it becomes the sync source (for a new
        /// volume over existing data, or after the peer was lost for good)
        #[arg(long)]
        force: bool,
    },
    /// Make this node Secondary: it stops serving the LUN (NOT READY, unavailable)
    Demote {
        /// IQN/LUN
        volume: String,
    },
    /// Compare both copies by checksums (on the Primary); progress and differing bytes show
    /// in `volume status`
    Verify {
        /// IQN/LUN
        volume: String,
        /// Copy the differing blocks from the Primary afterwards
        #[arg(long)]
        resync: bool,
    },
    /// Copy every block again from the Primary (--full is required)
    Resync {
        /// IQN/LUN
        volume: String,
        /// Every block, not only the marked ones
        #[arg(long, required = true)]
        full: bool,
    },
    /// Split brain: give up this node's changes and become the sync target of the peer
    DiscardMyData {
        /// IQN/LUN
        volume: String,
        /// Required: the writes made here since the split are lost
        #[arg(long)]
        force: bool,
    },
    /// Leave StandAlone and connect to the peer again
    Connect {
        /// IQN/LUN
        volume: String,
    },
    /// Take a replaced local disk back after a detach (synced in full from the peer)
    Attach {
        /// IQN/LUN
        volume: String,
    },
}

#[derive(Debug, Args)]
struct AclArgs {
    /// Target name
    #[arg(long, value_name = "IQN")]
    target: String,
    /// Initiator name
    #[arg(long, value_name = "NAME")]
    initiator: String,
}

#[derive(Debug, Subcommand)]
enum AclCmd {
    /// Allow an initiator
    Add(AclArgs),
    /// Remove an initiator (removing the last one allows any)
    Remove(AclArgs),
    /// List allowed initiators
    List {
        /// Target name
        #[arg(long, value_name = "IQN")]
        target: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuthCmd {
    /// CHAP credentials
    Chap {
        #[command(subcommand)]
        command: ChapCmd,
    },
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("secret_source").required(true).args(["secret", "secret_file"])))]
#[command(group(
    ArgGroup::new("mutual_secret_source")
        .args(["mutual_secret", "mutual_secret_file"])
        .requires("mutual_user")
))]
struct ChapSetArgs {
    /// Target name
    #[arg(long, value_name = "IQN")]
    target: String,
    /// CHAP name the initiator must send
    #[arg(long, value_name = "U")]
    user: String,
    /// The initiator's secret (visible to other users in the process list: prefer --secret-file)
    #[arg(long, value_name = "S")]
    secret: Option<String>,
    /// File holding the initiator's secret (one trailing newline is ignored)
    #[arg(long, value_name = "F")]
    secret_file: Option<PathBuf>,
    /// The target's own CHAP name for mutual CHAP
    #[arg(long, value_name = "U", requires = "mutual_secret_source")]
    mutual_user: Option<String>,
    /// The target's own secret for mutual CHAP
    #[arg(long, value_name = "S")]
    mutual_secret: Option<String>,
    /// File holding the target's own secret
    #[arg(long, value_name = "F")]
    mutual_secret_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ChapCmd {
    /// Require CHAP (and set mutual CHAP) on a target
    Set(ChapSetArgs),
    /// Remove CHAP from a target
    Clear {
        /// Target name
        #[arg(long, value_name = "IQN")]
        target: String,
    },
}

#[derive(Debug, Subcommand)]
enum PortalCmd {
    /// Listen on an address
    Add {
        /// Address to listen on
        #[arg(value_name = "ADDRESS:PORT")]
        address: String,
    },
    /// Stop listening on an address (sessions on it stay)
    Remove {
        /// Address to stop listening on
        #[arg(value_name = "ADDRESS:PORT")]
        address: String,
    },
    /// List listening addresses
    List,
}

#[derive(Debug, Subcommand)]
enum SessionCmd {
    /// List sessions with their negotiated parameters
    List,
}

#[derive(Debug, Subcommand)]
enum GenerateCmd {
    /// Print a completion script for SHELL
    Completions {
        /// The shell
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Write man pages, one per command and subcommand, into DIR
    Man {
        /// Output folder (created when missing)
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

/// Why a run did not succeed, and so its exit code.
enum Failure {
    /// A local problem with the arguments (exit 2).
    Usage(anyhow::Error),
    /// The daemon could not be reached or understood (exit 3).
    Client(ClientError),
    /// The daemon said no (exit 1, 3 or 4 by kind).
    Refused(Refusal),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => EXIT_USAGE,
            Failure::Client(_) => EXIT_UNREACHABLE,
            Failure::Refused(r) => match r.kind.as_str() {
                "io" => EXIT_DAEMON_IO,
                "protocol" => EXIT_UNREACHABLE,
                _ => EXIT_REFUSED,
            },
        }
    }

    /// The refusal as printed (`--json`) and as one stderr line.
    fn refusal(&self) -> Refusal {
        match self {
            Failure::Usage(e) => Refusal {
                field: None,
                message: format!("{e:#}"),
                kind: "usage".into(),
            },
            Failure::Client(e) => Refusal {
                field: None,
                message: e.to_string(),
                kind: match e {
                    ClientError::BadResponse { .. } => "protocol",
                    _ => "unreachable",
                }
                .into(),
            },
            Failure::Refused(r) => r.clone(),
        }
    }
}

/// What to print for a successful answer.
enum Shape {
    Targets,
    Target(String),
    Luns,
    Lun(String),
    LunShow,
    Pr,
    Volumes(Option<String>),
    Names(&'static str, &'static str),
    Sessions,
    Cut(String),
    Done(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let mut secrets = Vec::new();
    let result = run(cli, &mut secrets);
    let code = match result {
        Ok(text) => {
            emit_stdout(&redact(&text, &secrets));
            EXIT_OK
        }
        Err(failure) => {
            let r = failure.refusal();
            if json {
                let v = json!({ "error": r });
                emit_stdout(&redact(&pretty(&v), &secrets));
            }
            let line = match &r.field {
                Some(f) => format!("{f}: {}", r.message),
                None => r.message.clone(),
            };
            emit_stderr(&format!("target-admin: {}\n", redact(&line, &secrets)));
            failure.exit_code()
        }
    };
    ExitCode::from(code)
}

/// Runs the command line; returns what to print on stdout. Secrets read on the way are pushed
/// to `secrets` so that nothing printed can carry them.
fn run(cli: Cli, secrets: &mut Vec<String>) -> Result<String, Failure> {
    let (command, shape) = match cli.command {
        Top::Generate { command } => return generate(command).map_err(Failure::Usage),
        other => request(other, secrets).map_err(Failure::Usage)?,
    };
    let socket = socket_path(cli.socket);
    let response = client::call(&socket, command).map_err(Failure::Client)?;
    let data = accepted(response).map_err(Failure::Refused)?;
    if cli.json {
        return Ok(pretty(&data));
    }
    human(&data, shape).map_err(|reason| {
        Failure::Client(ClientError::BadResponse {
            path: socket,
            reason,
        })
    })
}

/// `--socket`, else `$RINGSAN_SOCKET`, else the default.
fn socket_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| {
        std::env::var_os(SOCKET_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// The response's data, or the daemon's refusal.
fn accepted(response: Response) -> Result<Value, Refusal> {
    if response.ok {
        return Ok(response.data);
    }
    Err(response.error.unwrap_or_else(|| Refusal {
        field: None,
        message: "the daemon refused without saying why".into(),
        kind: "protocol".into(),
    }))
}

/// The protocol command for a daemon subcommand, and how to print its answer.
fn request(top: Top, secrets: &mut Vec<String>) -> anyhow::Result<(Command, Shape)> {
    Ok(match top {
        Top::Target { command } => target_request(command),
        Top::Lun { command } => lun_request(command),
        Top::Acl { command } => acl_request(command),
        Top::Auth {
            command: AuthCmd::Chap { command },
        } => chap_request(command, secrets)?,
        Top::Portal { command } => portal_request(command),
        Top::Session {
            command: SessionCmd::List,
        } => (Command::SessionList, Shape::Sessions),
        Top::Pr {
            command: PrCmd::Show(LunAddr { target, lun }),
        } => (Command::PrShow { target, lun }, Shape::Pr),
        Top::Pr {
            command:
                PrCmd::Clear {
                    at: LunAddr { target, lun },
                    force,
                },
        } => (
            Command::PrClear {
                target: target.clone(),
                lun,
                force,
            },
            Shape::Done(format!(
                "cleared the persistent reservations of LUN {lun} of {target}"
            )),
        ),
        Top::Volume { command } => volume_request(command),
        Top::Generate { .. } => anyhow::bail!("generate needs no daemon"),
    })
}

fn target_request(c: TargetCmd) -> (Command, Shape) {
    match c {
        TargetCmd::Create { iqn, tpgt, alias } => (
            Command::TargetCreate {
                iqn: iqn.clone(),
                tpgt,
                alias,
            },
            Shape::Target(format!("created target {iqn}")),
        ),
        TargetCmd::List => (Command::TargetList, Shape::Targets),
        TargetCmd::Delete { iqn, force } => (
            Command::TargetDelete {
                iqn: iqn.clone(),
                force,
            },
            Shape::Cut(format!("deleted target {iqn} (backing files stay)")),
        ),
    }
}

fn lun_request(c: LunCmd) -> (Command, Shape) {
    match c {
        LunCmd::Create {
            target,
            lun,
            path,
            size,
            block_size,
            write_cache,
        } => (
            Command::LunCreate {
                target: target.clone(),
                lun,
                path,
                size,
                block_size: block_size.map(BlockSize::bytes),
                write_cache: write_cache.then_some(true),
            },
            Shape::Lun(format!("created LUN {lun} of {target}")),
        ),
        LunCmd::List { target } => (Command::LunList { target }, Shape::Luns),
        LunCmd::Show(LunAddr { target, lun }) => (Command::LunShow { target, lun }, Shape::LunShow),
        LunCmd::Resize {
            target,
            lun,
            size,
            force,
        } => (
            Command::LunResize {
                target: target.clone(),
                lun,
                size: size.clone(),
                force,
            },
            Shape::Lun(format!("resized LUN {lun} of {target} to {size}")),
        ),
        LunCmd::Delete {
            at: LunAddr { target, lun },
            force,
        } => (
            Command::LunDelete {
                target: target.clone(),
                lun,
                force,
            },
            Shape::Cut(format!(
                "deleted LUN {lun} of {target} (the backing file stays)"
            )),
        ),
    }
}

fn acl_request(c: AclCmd) -> (Command, Shape) {
    match c {
        AclCmd::Add(AclArgs { target, initiator }) => (
            Command::AclAdd {
                target: target.clone(),
                initiator: initiator.clone(),
            },
            Shape::Done(format!("allowed {initiator} on {target}")),
        ),
        AclCmd::Remove(AclArgs { target, initiator }) => (
            Command::AclRemove {
                target: target.clone(),
                initiator: initiator.clone(),
            },
            Shape::Done(format!("removed {initiator} from the ACL of {target}")),
        ),
        AclCmd::List { target } => (
            Command::AclList { target },
            Shape::Names("INITIATOR", "the ACL is empty: any initiator may log in"),
        ),
    }
}

fn chap_request(c: ChapCmd, secrets: &mut Vec<String>) -> anyhow::Result<(Command, Shape)> {
    Ok(match c {
        ChapCmd::Set(a) => {
            let secret = secret_value(a.secret, a.secret_file.as_deref(), "--secret-file")?;
            secrets.push(secret.clone());
            let mutual_secret = match (a.mutual_secret, a.mutual_secret_file.as_deref()) {
                (None, None) => None,
                (s, f) => Some(secret_value(s, f, "--mutual-secret-file")?),
            };
            secrets.extend(mutual_secret.iter().cloned());
            let done = match &a.mutual_user {
                Some(m) => format!(
                    "CHAP required on {} (user {}; mutual CHAP as {m})",
                    a.target, a.user
                ),
                None => format!("CHAP required on {} (user {})", a.target, a.user),
            };
            (
                Command::ChapSet {
                    target: a.target,
                    user: a.user,
                    secret,
                    mutual_user: a.mutual_user,
                    mutual_secret,
                },
                Shape::Done(done),
            )
        }
        ChapCmd::Clear { target } => (
            Command::ChapClear {
                target: target.clone(),
            },
            Shape::Done(format!("CHAP removed from {target}")),
        ),
    })
}

fn portal_request(c: PortalCmd) -> (Command, Shape) {
    match c {
        PortalCmd::Add { address } => (
            Command::PortalAdd {
                address: address.clone(),
            },
            Shape::Done(format!("listening on {address}")),
        ),
        PortalCmd::Remove { address } => (
            Command::PortalRemove {
                address: address.clone(),
            },
            Shape::Done(format!(
                "no longer listening on {address} (sessions on it stay)"
            )),
        ),
        PortalCmd::List => (
            Command::PortalList,
            Shape::Names("PORTAL", "no portals: the daemon listens nowhere"),
        ),
    }
}

fn volume_request(c: VolumeCmd) -> (Command, Shape) {
    let done = |what: String| Shape::Volumes(Some(what));
    match c {
        VolumeCmd::Status { volume } => (Command::VolumeStatus { volume }, Shape::Volumes(None)),
        VolumeCmd::Promote { volume, force } => (
            Command::VolumePromote {
                volume: volume.clone(),
                force,
            },
            done(format!("{volume}: Primary")),
        ),
        VolumeCmd::Demote { volume } => (
            Command::VolumeDemote {
                volume: volume.clone(),
            },
            done(format!("{volume}: Secondary")),
        ),
        VolumeCmd::Verify { volume, resync } => (
            Command::VolumeVerify {
                volume: volume.clone(),
                resync,
            },
            done(format!(
                "{volume}: verify started (progress in `volume status`)"
            )),
        ),
        VolumeCmd::Resync { volume, .. } => (
            Command::VolumeResyncFull {
                volume: volume.clone(),
            },
            done(format!("{volume}: full resync started")),
        ),
        VolumeCmd::DiscardMyData { volume, force } => (
            Command::VolumeDiscardMyData {
                volume: volume.clone(),
                force,
            },
            done(format!(
                "{volume}: this copy's changes discarded; syncing from the peer"
            )),
        ),
        VolumeCmd::Connect { volume } => (
            Command::VolumeConnect {
                volume: volume.clone(),
            },
            done(format!("{volume}: connecting")),
        ),
        VolumeCmd::Attach { volume } => (
            Command::VolumeAttach {
                volume: volume.clone(),
            },
            done(format!(
                "{volume}: disk attached (Inconsistent until synced)"
            )),
        ),
    }
}

/// A secret given inline or in a file (without its trailing newline). clap guarantees one of
/// the two at most.
fn secret_value(inline: Option<String>, file: Option<&Path>, flag: &str) -> anyhow::Result<String> {
    match (inline, file) {
        (Some(s), _) => Ok(s),
        (None, Some(f)) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("{flag}: cannot read {}", f.display()))?;
            let s = text
                .strip_suffix('\n')
                .map(|s| s.strip_suffix('\r').unwrap_or(s))
                .unwrap_or(&text);
            anyhow::ensure!(!s.is_empty(), "{flag}: {} is empty", f.display());
            Ok(s.to_string())
        }
        (None, None) => anyhow::bail!("{flag}: no secret given"),
    }
}

/// Human output of a successful answer; an error names what in the data is not as expected.
fn human(data: &Value, shape: Shape) -> Result<String, String> {
    Ok(match shape {
        Shape::Targets => format::targets(&parse::<Vec<TargetInfo>>(data)?),
        Shape::Luns => format::luns(&parse::<Vec<LunInfo>>(data)?),
        Shape::LunShow => format::lun(&parse::<LunInfo>(data)?),
        Shape::Pr => format::pr(&parse::<PrInfo>(data)?),
        Shape::Volumes(done) => {
            let list = parse::<Vec<VolumeInfo>>(data)?;
            let mut out = done.map(|d| format!("{d}\n")).unwrap_or_default();
            if list.is_empty() {
                out.push_str("no mirrored volumes\n");
            }
            for v in list {
                out.push_str(&v.text);
            }
            out
        }
        Shape::Sessions => format::sessions(&parse::<Vec<SessionInfo>>(data)?),
        Shape::Names(header, empty) => format::names(header, &parse::<Vec<String>>(data)?, empty),
        Shape::Target(done) => match data {
            Value::Null => format!("{done}\n"),
            v => format!("{done}\n{}", format::target(&parse::<TargetInfo>(v)?)),
        },
        Shape::Lun(done) => match data {
            Value::Null => format!("{done}\n"),
            v => format!("{done}\n{}", format::lun(&parse::<LunInfo>(v)?)),
        },
        Shape::Cut(done) => match data.get("sessions_cut").and_then(Value::as_u64) {
            Some(0) | None => format!("{done}\n"),
            Some(1) => format!("{done}; 1 session cut\n"),
            Some(n) => format!("{done}; {n} sessions cut\n"),
        },
        Shape::Done(done) => format!("{done}\n"),
    })
}

fn parse<T: DeserializeOwned>(data: &Value) -> Result<T, String> {
    T::deserialize(data).map_err(|e| format!("unexpected data ({e})"))
}

fn pretty(v: &Value) -> String {
    // Serializing a Value cannot fail (its map keys are strings); fall back to the compact form.
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()) + "\n"
}

/// `text` with every secret replaced, so that no answer or message can echo one.
fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s.as_str(), "<secret>");
        // A JSON string carries the secret escaped when it holds quotes or backslashes.
        if let Ok(quoted) = serde_json::to_string(s) {
            let escaped = &quoted[1..quoted.len() - 1];
            if escaped != s {
                out = out.replace(escaped, "<secret>");
            }
        }
    }
    out
}

/// `generate`: completions on stdout, or man pages into a folder.
fn generate(c: GenerateCmd) -> Result<String, anyhow::Error> {
    let mut cmd = Cli::command();
    match c {
        GenerateCmd::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "target-admin", &mut out);
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
        GenerateCmd::Man { dir } => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("--dir: cannot create {}", dir.display()))?;
            let mut cmd = cmd.disable_help_subcommand(true);
            cmd.build();
            let mut written = Vec::new();
            man_pages(cmd, &dir, &mut written)?;
            Ok(written
                .iter()
                .map(|p| format!("{}\n", p.display()))
                .collect())
        }
    }
}

/// One man page (section 8: the socket is root's) per command, subcommands first.
fn man_pages(cmd: clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(sub.clone(), dir, written)?;
    }
    let man = clap_mangen::Man::new(cmd)
        .section("8")
        .manual("ringsan")
        .source(concat!("ringsan ", env!("CARGO_PKG_VERSION")));
    let path = man
        .generate_to(dir)
        .with_context(|| format!("--dir: cannot write a man page into {}", dir.display()))?;
    written.push(path);
    Ok(())
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn emit_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

fn emit_stderr(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
