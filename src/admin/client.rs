//! `target-admin`'s side of the control protocol: one blocking request/response exchange with
//! `ringsand` on its Unix socket (newline-delimited JSON, see [`protocol`](super::protocol)).
//!
//! It only moves requests and responses; it never interprets a refusal (that is the caller's
//! business) and never formats the command it sent into an error, because commands can carry CHAP
//! secrets. It must not touch daemon state other than through the socket.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::protocol::{Command, Request, Response, PROTOCOL_VERSION};

/// How long one exchange may take, each way, before the client gives up.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The longest response line accepted: a session list of thousands of sessions fits many times.
pub const RESPONSE_LEN_MAX_BYTES: u64 = 16 << 20;

/// Why no response could be had.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket (missing, stale, or not a socket).
    #[error("cannot connect to {}: {source} (is ringsand running? are you root?)", path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The socket (or a folder above it) is not accessible to this user.
    #[error("permission denied on {} (the control socket is root's: run as root)", path.display())]
    PermissionDenied {
        /// The socket.
        path: PathBuf,
    },
    /// The request could not be sent or no answer arrived in time.
    #[error("no answer from ringsand on {}: {source}", path.display())]
    Io {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The answer is not a response of this protocol.
    #[error("bad response from ringsand on {}: {reason}", path.display())]
    BadResponse {
        /// The socket.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Sends `command` to the daemon listening on `socket` and returns its response, waiting at most
/// [`TIMEOUT`] for each step.
pub fn call(socket: &Path, command: Command) -> Result<Response, ClientError> {
    call_with_timeout(socket, command, TIMEOUT)
}

/// As [`call`], with another timeout.
pub fn call_with_timeout(
    socket: &Path,
    command: Command,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let path = socket.to_path_buf();
    let stream = UnixStream::connect(socket).map_err(|source| connect_error(&path, source))?;
    let io = |source: std::io::Error| ClientError::Io {
        path: path.clone(),
        source,
    };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let request = Request {
        version: PROTOCOL_VERSION,
        command,
    };
    let mut line = serde_json::to_vec(&request).map_err(|e| ClientError::BadResponse {
        path: path.clone(),
        reason: format!("cannot encode the request: {e}"),
    })?;
    line.push(b'\n');
    (&stream).write_all(&line).map_err(io)?;
    (&stream).flush().map_err(io)?;
    read_response(&stream, &path, timeout)
}

/// Reads one bounded response line and decodes it.
fn read_response(
    stream: &UnixStream,
    path: &Path,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let mut reader = BufReader::new(stream.take(RESPONSE_LEN_MAX_BYTES + 1));
    let mut line = Vec::new();
    reader
        .read_until(b'\n', &mut line)
        .map_err(|source| ClientError::Io {
            path: path.to_path_buf(),
            source: timeout_named(source, timeout),
        })?;
    let bad = |reason: String| ClientError::BadResponse {
        path: path.to_path_buf(),
        reason,
    };
    if line.len() as u64 > RESPONSE_LEN_MAX_BYTES {
        return Err(bad(format!("longer than {RESPONSE_LEN_MAX_BYTES} bytes")));
    }
    if line.last() != Some(&b'\n') {
        return Err(bad(if line.is_empty() {
            "the daemon closed the connection without answering".into()
        } else {
            "the answer ends before its newline".into()
        }));
    }
    serde_json::from_slice(&line).map_err(|e| bad(format!("not a protocol response: {e}")))
}

/// A timed-out read says which limit ran out rather than "resource temporarily unavailable".
fn timeout_named(e: std::io::Error, timeout: Duration) -> std::io::Error {
    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
        std::io::Error::new(
            ErrorKind::TimedOut,
            format!("no answer within {:?}", timeout),
        )
    } else {
        e
    }
}

fn connect_error(path: &Path, source: std::io::Error) -> ClientError {
    if source.kind() == ErrorKind::PermissionDenied {
        ClientError::PermissionDenied {
            path: path.to_path_buf(),
        }
    } else {
        ClientError::Connect {
            path: path.to_path_buf(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn socket_path(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ringsan-client-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("s.sock")
    }

    /// A one-shot server that answers the first line with `answer`; returns the request it read.
    fn serve(path: &Path, answer: &'static [u8]) -> std::thread::JoinHandle<String> {
        let listener = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line).unwrap();
            (&s).write_all(answer).unwrap();
            line
        })
    }

    #[test]
    fn sends_one_versioned_line_and_reads_one_back() {
        let path = socket_path("ok");
        let server = serve(
            &path,
            b"{\"version\":1,\"ok\":true,\"data\":[\"127.0.0.1:3260\"],\"error\":null}\n",
        );
        let r = call(&path, Command::PortalList).unwrap();
        assert!(r.ok);
        assert_eq!(r.data, serde_json::json!(["127.0.0.1:3260"]));
        let sent: serde_json::Value = serde_json::from_str(&server.join().unwrap()).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"version": 1, "command": {"op": "portal-list"}})
        );
    }

    #[test]
    fn missing_socket_names_the_path_and_the_hint() {
        let path = socket_path("missing");
        let e = call(&path, Command::TargetList).unwrap_err();
        assert!(matches!(e, ClientError::Connect { .. }));
        let text = e.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(
            text.contains("is ringsand running? are you root?"),
            "{text}"
        );
    }

    #[test]
    fn garbage_and_silence_are_bad_responses() {
        let path = socket_path("garbage");
        let server = serve(&path, b"hello\n");
        let e = call(&path, Command::TargetList).unwrap_err();
        server.join().unwrap();
        assert!(matches!(e, ClientError::BadResponse { .. }), "{e}");

        let path = socket_path("silent");
        let server = serve(&path, b"");
        let e = call(&path, Command::TargetList).unwrap_err();
        server.join().unwrap();
        assert!(e.to_string().contains("without answering"), "{e}");
    }

    #[test]
    fn a_stalled_daemon_times_out() {
        let path = socket_path("stall");
        let listener = UnixListener::bind(&path).unwrap();
        let e =
            call_with_timeout(&path, Command::TargetList, Duration::from_millis(100)).unwrap_err();
        drop(listener);
        assert!(matches!(e, ClientError::Io { .. }), "{e}");
    }

    #[test]
    fn secrets_stay_out_of_errors() {
        let path = socket_path("secret");
        let e = call(
            &path,
            Command::ChapSet {
                target: "iqn.2026-11.io.ringsan:t".into(),
                user: "u".into(),
                secret: "very+secret+pw".into(),
                mutual_user: None,
                mutual_secret: None,
            },
        )
        .unwrap_err();
        assert!(!format!("{e} {e:?}").contains("very+secret+pw"));
    }
}
