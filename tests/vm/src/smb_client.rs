//! An SMB2 client the tests drive step by step: opens with a chosen share access
//! and oplock, byte-range locks, and the oplock breaks the server sends, over
//! several connections at once (each to a public address of the test's choice).
//!
//! ```text
//!   test ──stdin: one command a line──> python3 smb_client.py (client namespace)
//!        <─stdout: one reply a line───    smbprotocol ──SMB2──> 10.0.20.10x:445
//! ```
//!
//! The client is `smb_client.py` (beside this file; its header lists the
//! commands) on the `smbprotocol` package that `tests/install-deps.sh test`
//! installs into [`VENV_PYTHON`]'s virtual environment. Each command gets one
//! reply; [`SmbClient::expect`] fails with the command, what was expected and
//! what the client said, plus the whole conversation so far. The process is
//! killed by PID when the handle drops.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::Ipv4Addr;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};

use crate::cluster::Cluster;
use crate::samba::{SAMBA_PASSWORD, SAMBA_USER, SHARE};

/// The Python of the virtual environment holding `smbprotocol`.
pub const VENV_PYTHON: &str = "/opt/ctdb-rs-test/venv/bin/python3";

/// The client program, passed to Python with `-c`.
const CLIENT_SOURCE: &str = include_str!("smb_client.py");

/// The longest one command may take before the client counts as stuck. Commands
/// that wait on the server on purpose (`await`, `waitbreak`) take shorter
/// deadlines of their own.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A running client; see the module documentation.
#[derive(Debug)]
pub struct SmbClient {
    child: Child,
    stdin: ChildStdin,
    replies: Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// Every command and reply so far, for failure messages.
    transcript: Vec<String>,
}

/// Fails, naming the fix, unless the client's Python environment is installed.
pub fn check_prerequisites() -> anyhow::Result<()> {
    if !std::path::Path::new(VENV_PYTHON).is_file() {
        bail!(
            "{VENV_PYTHON} is missing: the SMB test client needs smbprotocol in that \
             virtual environment (source tests/install-deps.sh test)"
        );
    }
    Ok(())
}

impl SmbClient {
    /// Starts a client in `cluster`'s client namespace.
    pub fn start(cluster: &Cluster) -> anyhow::Result<Self> {
        check_prerequisites()?;
        let Some(netns) = cluster.client() else {
            bail!("this cluster was built without a client namespace");
        };
        let mut cmd = netns.command(VENV_PYTHON);
        cmd.args(["-u", "-c", CLIENT_SOURCE])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("starting the SMB test client")?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
        let (tx, replies) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("stderr buffer")
                    .extend_from_slice(&buf[..n]);
            }
        });
        Ok(Self {
            child,
            stdin,
            replies,
            stderr,
            transcript: Vec::new(),
        })
    }

    /// Sends `command` and returns the client's reply line.
    pub fn send(&mut self, command: &str) -> anyhow::Result<String> {
        self.transcript.push(format!("> {command}"));
        writeln!(self.stdin, "{command}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| {
                anyhow!(
                    "sending `{command}` to the SMB client: {e}\n{}",
                    self.story()
                )
            })?;
        match self.replies.recv_timeout(COMMAND_TIMEOUT) {
            Ok(reply) => {
                self.transcript.push(format!("< {reply}"));
                Ok(reply)
            }
            Err(RecvTimeoutError::Timeout) => bail!(
                "the SMB client gave no reply to `{command}` within {COMMAND_TIMEOUT:?}\n{}",
                self.story()
            ),
            Err(RecvTimeoutError::Disconnected) => bail!(
                "the SMB client exited without replying to `{command}`\n{}",
                self.story()
            ),
        }
    }

    /// Sends `command` and fails unless the reply starts with `want` (`ok`,
    /// `status STATUS_SHARING_VIOLATION`, `timeout`...). Returns the reply.
    pub fn expect(&mut self, command: &str, want: &str, why: &str) -> anyhow::Result<String> {
        let reply = self.send(command)?;
        if reply == want || reply.starts_with(&format!("{want} ")) {
            return Ok(reply);
        }
        bail!(
            "{why}\n  command:  {command}\n  expected: {want}\n  got:      {reply}\n{}",
            self.story()
        )
    }

    /// Opens connection `name` to the share through `addr` as the test user.
    pub fn connect(&mut self, name: &str, addr: Ipv4Addr) -> anyhow::Result<()> {
        self.connect_share(name, addr, SHARE)
    }

    /// Opens connection `name` to `share` through `addr` as the test user.
    pub fn connect_share(&mut self, name: &str, addr: Ipv4Addr, share: &str) -> anyhow::Result<()> {
        self.expect(
            &format!("connect {name} {addr} {share} {SAMBA_USER} {SAMBA_PASSWORD}"),
            "ok",
            &format!("{SAMBA_USER} should log in to //{addr}/{share}"),
        )
        .map(drop)
    }

    /// Creates `path` on connection `conn` and writes `text` into it (open, write,
    /// close); `why` says what the write is for, in the error.
    pub fn write_file(
        &mut self,
        conn: &str,
        path: &str,
        text: &str,
        why: &str,
    ) -> anyhow::Result<()> {
        self.expect(
            &format!("open f {conn} {path} access=rw share=rw oplock=none"),
            "ok",
            &format!("create {path}: {why}"),
        )?;
        self.expect(
            &format!("write f 0 {text}"),
            "ok",
            &format!("write {path}: {why}"),
        )?;
        self.expect("close f", "ok", &format!("close {path}"))
            .map(drop)
    }

    /// Opens `path` on connection `conn` and fails unless it holds `text` (open,
    /// read, close); `why` says what the read shows, in the error.
    pub fn expect_file(
        &mut self,
        conn: &str,
        path: &str,
        text: &str,
        why: &str,
    ) -> anyhow::Result<()> {
        self.expect(
            &format!("open f {conn} {path} access=r share=rw oplock=none"),
            "ok",
            &format!("open {path}: {why}"),
        )?;
        self.expect(
            &format!("read f 0 {}", text.len()),
            &format!("ok data={text}"),
            why,
        )?;
        self.expect("close f", "ok", &format!("close {path}"))
            .map(drop)
    }

    /// The conversation so far and what the client wrote on standard error.
    pub fn story(&self) -> String {
        let stderr = self.stderr.lock().expect("stderr buffer");
        format!(
            "---- SMB client conversation ----\n{}\n---- SMB client stderr ----\n{}",
            self.transcript.join("\n"),
            String::from_utf8_lossy(&stderr)
        )
    }
}

impl Drop for SmbClient {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
