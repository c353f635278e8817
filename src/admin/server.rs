//! The control socket: a Unix socket only root may open (mode 0600 in a 0755 folder), one JSON
//! request per line in, one JSON response per line out. Runs on its own thread with a small
//! tokio runtime; it never touches the data path.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::admin::apply::Control;
use crate::admin::protocol::{Refusal, Request, Response, PROTOCOL_VERSION};

/// Longest request line accepted.
const MAX_REQUEST_BYTES: u64 = 1 << 20;

/// Binds the control socket at `path` and serves it on a new thread.
pub fn start(control: Arc<Control>, path: &Path) -> std::io::Result<std::thread::JoinHandle<()>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A socket left by a killed predecessor is in the way; anything else at the path is not ours.
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)?;
        } else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
    }
    let std_listener = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    std_listener.set_nonblocking(true)?;
    let path: PathBuf = path.to_path_buf();
    std::thread::Builder::new()
        .name("ringsan-control".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "control runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                let listener = match UnixListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, path = %path.display(), "control socket");
                        return;
                    }
                };
                loop {
                    match listener.accept().await {
                        Ok((stream, _)) => {
                            tokio::spawn(serve(control.clone(), stream));
                        }
                        Err(e) => tracing::warn!(error = %e, "control accept"),
                    }
                }
            })
        })
}

async fn serve(control: Arc<Control>, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_REQUEST_BYTES)).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(request) => {
                let c = control.clone();
                match tokio::task::spawn_blocking(move || c.handle(request)).await {
                    Ok(r) => r,
                    Err(e) => failure(format!("internal error: {e}")),
                }
            }
            Err(e) => failure(format!("malformed request: {e}")),
        };
        let mut text = match serde_json::to_string(&response) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "encoding a control response");
                return;
            }
        };
        text.push('\n');
        if write.write_all(text.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn failure(message: String) -> Response {
    Response {
        version: PROTOCOL_VERSION,
        ok: false,
        data: serde_json::Value::Null,
        error: Some(Refusal {
            field: None,
            message,
            kind: "protocol".into(),
        }),
    }
}
