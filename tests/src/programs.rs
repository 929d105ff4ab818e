//! Running the interop check programs (autobahn-python scripts in `tests/interop/`, autobahn-js scripts in
//! `tests/interop-js/`): each runs real client sessions against a router, prints one line per passed check and
//! `PASSED ...` at the end, and exits 0 only when everything passed. A missing install is a failure that says to run
//! `tests/run.sh`, never a skip.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The programs time out by themselves; this is the last resort.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);

/// `tests/interop` (autobahn-python programs).
pub fn python_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop")
}

/// `tests/interop-js` (autobahn-js programs).
pub fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop-js")
}

/// The interpreter of `tests/.venv`, where `tests/run.sh` installs autobahn-python.
pub fn python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "autobahn-python venv missing: run tests/run.sh (it creates {})",
        python.display()
    );
    python
}

/// Runs `tests/interop/<script> <args>` to the end; panics with its output unless it passed.
pub fn python_check(script: &str, args: &[&str]) {
    Check::spawn(&python(), &python_dir(), script, args).finish();
}

/// Starts `node tests/interop-js/<script> <args>` (fails when the npm install is missing).
pub fn node(script: &str, args: &[&str]) -> Check {
    let autobahn = node_dir().join("node_modules/autobahn/package.json");
    assert!(
        autobahn.exists(),
        "autobahn-js missing ({} not found): run tests/run.sh (it runs `npm ci` in tests/interop-js)",
        autobahn.display()
    );
    Check::spawn(Path::new("node"), &node_dir(), script, args)
}

/// Runs `node tests/interop-js/<script> <args>` to the end; panics with its output unless it passed.
pub fn node_check(script: &str, args: &[&str]) {
    node(script, args).finish();
}

/// A check program running with its output collected line by line; killed on drop if still running (a failed
/// test leaves no process behind).
pub struct Check {
    label: String,
    child: Child,
    lines: Receiver<String>,
    stdout: Vec<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Check {
    /// Starts `program dir/script args` in `dir`.
    pub fn spawn(program: &Path, dir: &Path, script: &str, args: &[&str]) -> Check {
        let mut child = Command::new(program)
            .arg(dir.join(script))
            .args(args)
            .current_dir(dir)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let (send, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut pipe = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = pipe.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        });
        Check {
            label: format!("{script} {args:?}"),
            child,
            lines,
            stdout: Vec::new(),
            stderr: Some(stderr),
        }
    }

    /// Reads output until a line equal to `line`; panics with the output so far if the program ends or takes
    /// longer than `timeout`.
    pub fn wait_for_line(&mut self, line: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(got) => {
                    let done = got == line;
                    self.stdout.push(got);
                    if done {
                        return;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "{} did not print {line:?} within {timeout:?}:\n{}",
                        self.label,
                        self.stdout.join("\n")
                    );
                }
            }
        }
    }

    /// Waits for the program to end; fails with its output unless it exited 0 and reported success.
    pub fn finish(&mut self) {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for check program") {
                break Some(status);
            }
            if started.elapsed() > PROCESS_TIMEOUT {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader thread ends at EOF, so this collects everything the program printed.
        self.stdout.extend(self.lines.iter());
        let stderr = self
            .stderr
            .take()
            .map(|t| t.join().unwrap())
            .unwrap_or_default();
        let (stdout, label) = (self.stdout.join("\n"), &self.label);
        let Some(status) = status else {
            panic!("{label} still running after {PROCESS_TIMEOUT:?}, killed:\n{stdout}\n{stderr}");
        };
        assert!(
            status.success(),
            "{label} failed ({status}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
        assert!(
            stdout.lines().any(|line| line.starts_with("PASSED ")),
            "{label} exited 0 without reporting success:\n{stdout}\n{stderr}"
        );
        // The checks that ran (shown with --nocapture).
        eprintln!("{stdout}");
    }
}

impl Drop for Check {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
