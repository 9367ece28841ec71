//! Running a job's steps: each is `sh -c <step>` in its own process group,
//! its stdout and stderr passed through to the stand-in's own, and the last
//! lines kept ([`Tail`]) for the report.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use super::decide::StepEnd;

/// Lines kept for the report.
pub const TAIL_LINES: usize = 20;
/// Bytes kept of one line; the rest of a longer line is dropped.
pub const TAIL_LINE_BYTES: usize = 500;

/// How long output is still passed through after a step exited.
const OUTPUT_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Which output a chunk came from: each has its own unfinished line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// The last [`TAIL_LINES`] lines of the output, each cut at
/// [`TAIL_LINE_BYTES`], in bounded memory whatever the output (binary,
/// no newlines, gigabytes).
#[derive(Debug, Default)]
pub struct Tail {
    lines: VecDeque<String>,
    partial: [Vec<u8>; 2],
}

impl Tail {
    pub fn feed(&mut self, stream: Stream, bytes: &[u8]) {
        let index = match stream {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        };
        let mut rest = bytes;
        loop {
            let (piece, newline) = match rest.iter().position(|b| *b == b'\n') {
                Some(at) => (rest.get(..at).unwrap_or_default(), true),
                None => (rest, false),
            };
            if let Some(partial) = self.partial.get_mut(index) {
                let room = TAIL_LINE_BYTES.saturating_sub(partial.len());
                partial.extend_from_slice(piece.get(..room.min(piece.len())).unwrap_or_default());
            }
            if !newline {
                return;
            }
            self.end_line(index);
            rest = rest
                .get(piece.len().saturating_add(1)..)
                .unwrap_or_default();
        }
    }

    fn end_line(&mut self, index: usize) {
        let Some(partial) = self.partial.get_mut(index) else {
            return;
        };
        let line = String::from_utf8_lossy(partial)
            .trim_end_matches('\r')
            .to_string();
        partial.clear();
        self.push(line);
    }

    /// A line of the stand-in's own (a step's header).
    pub fn push(&mut self, line: String) {
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// Ends the unfinished lines and returns every kept line.
    pub fn finish(mut self) -> Vec<String> {
        for index in 0..2 {
            if self.partial.get(index).is_some_and(|p| !p.is_empty()) {
                self.end_line(index);
            }
        }
        self.lines.into_iter().collect()
    }
}

/// Writes a chunk to the stand-in's own stdout or stderr (blocking, like
/// a log line: the container runtime reads them).
fn write_own(stream: Stream, chunk: &[u8]) {
    use std::io::Write;
    // Our own output going away must not stop the step.
    let _ = match stream {
        Stream::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(chunk).and_then(|()| out.flush())
        }
        Stream::Stderr => std::io::stderr().lock().write_all(chunk),
    };
}

/// Copies `from` to the stand-in's own `stream` chunk by chunk, feeding the
/// tail.
async fn pass_through<R>(mut from: R, stream: Stream, tail: &Mutex<Tail>)
where
    R: AsyncRead + Unpin,
{
    let mut buffer = vec![0u8; 8192];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = buffer.get(..n).unwrap_or_default();
        write_own(stream, chunk);
        tail.lock().await.feed(stream, chunk);
    }
}

/// Starts one step: `sh -c <step>` in its own process group (so that a
/// cancel reaches its children), with `env` added and `removed` taken out
/// of the environment.
pub fn spawn(step: &str, env: &[(&str, String)], removed: &[&str]) -> std::io::Result<Child> {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(step)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for name in removed {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.spawn()
}

/// Waits for a step, passing its output through; `cancel` resolving kills
/// its process group and ends the step as canceled.
pub async fn run(
    mut child: Child,
    tail: &Mutex<Tail>,
    cancel: impl Future<Output = ()>,
) -> StepEnd {
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let output = async {
        let out = async {
            if let Some(s) = stdout {
                pass_through(s, Stream::Stdout, tail).await;
            }
        };
        let err = async {
            if let Some(s) = stderr {
                pass_through(s, Stream::Stderr, tail).await;
            }
        };
        tokio::join!(out, err);
    };
    let pid = child.id();
    let finished = async {
        let mut output = std::pin::pin!(output);
        let mut output_done = false;
        let status = loop {
            tokio::select! {
                () = &mut output, if !output_done => output_done = true,
                status = child.wait() => break status,
            }
        };
        // A background process of the step may hold the pipes open: drain
        // what is there, briefly, and go on.
        if !output_done {
            let _ = tokio::time::timeout(OUTPUT_GRACE, output).await;
        }
        status
    };
    tokio::select! {
        status = finished => match status {
            Ok(status) => match (status.code(), status.signal()) {
                (Some(code), _) => StepEnd::Exited(code),
                (None, Some(signal)) => StepEnd::Signaled(signal),
                (None, None) => StepEnd::Exited(1),
            },
            Err(e) => StepEnd::NotStarted(format!("waiting for sh: {e}")),
        },
        () = cancel => {
            kill_group(pid);
            StepEnd::Canceled
        }
    }
}

fn kill_group(pid: Option<u32>) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_lines_per_stream() {
        let mut tail = Tail::default();
        tail.feed(Stream::Stdout, b"one\ntw");
        tail.feed(Stream::Stderr, b"err\r\n");
        tail.feed(Stream::Stdout, b"o\n\nthree");
        assert_eq!(tail.finish(), ["one", "err", "two", "", "three"]);
    }

    #[test]
    fn the_tail_is_bounded() {
        let mut tail = Tail::default();
        for i in 0..TAIL_LINES + 5 {
            tail.feed(Stream::Stdout, format!("line {i}\n").as_bytes());
        }
        // A line with no end, bigger than the bound, fed in pieces.
        for _ in 0..100 {
            tail.feed(Stream::Stderr, &[0u8; 100]);
        }
        let lines = tail.finish();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(lines.first().map(String::as_str), Some("line 6"));
        assert_eq!(lines.last().map(String::len), Some(TAIL_LINE_BYTES));
    }

    #[test]
    fn invalid_utf8_is_kept_lossily() {
        let mut tail = Tail::default();
        tail.feed(Stream::Stdout, b"a\xffb\n");
        assert_eq!(tail.finish(), ["a\u{fffd}b"]);
    }

    #[tokio::test]
    async fn steps_exit_with_their_code_and_cancel_kills_them() {
        let tail = Mutex::new(Tail::default());
        let never = std::future::pending::<()>();
        let child = spawn("echo hello; exit 3", &[], &[]).expect("sh starts");
        assert_eq!(run(child, &tail, never).await, StepEnd::Exited(3));
        let child = spawn("kill -9 $$", &[], &[]).expect("sh starts");
        assert_eq!(
            run(child, &tail, std::future::pending()).await,
            StepEnd::Signaled(9)
        );
        let child = spawn(
            "echo \"$RUNWAY_X\"; sleep 30",
            &[("RUNWAY_X", "x".into())],
            &[],
        )
        .expect("sh starts");
        let start = std::time::Instant::now();
        let cancel = tokio::time::sleep(std::time::Duration::from_millis(200));
        assert_eq!(run(child, &tail, cancel).await, StepEnd::Canceled);
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(tail.into_inner().finish(), ["hello", "x"]);
    }
}
