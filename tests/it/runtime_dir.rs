//! The runtime directory is not taken over by another local user (issue 11,
//! item 5). With `XDG_RUNTIME_DIR` unset the sockets live under
//! `<tmp>/tiffin-<uid>`, a path anyone can create first. A second,
//! unprivileged user (created here; these tests run as root, as on CI, and
//! fail loudly otherwise) plants that path as a world-writable directory or
//! as a symlink, or runs a supervisor of their own, and every side must
//! refuse with an error that names the path and says what is wrong: the
//! supervisor at start, `tiffin status` / `tiffin scale`, a restarted
//! worker, and a client whose socket leads to another user's process
//! (`SO_PEERCRED`). `TMPDIR` points at a scratch directory of each test
//! (`std::env::temp_dir` honours it), so nothing touches the real `/tmp`.

use crate::common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown, lchown, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User, geteuid};

use common::*;

/// The unprivileged user that plays the intruder.
const INTRUDER: &str = "tiffin-test-intruder";

/// The intruder's uid and gid, creating the user if it is missing. Panics
/// (the test fails, it is not skipped) when not run as root.
fn intruder() -> (u32, u32) {
    assert!(
        geteuid().is_root(),
        "tests/it/runtime_dir.rs must run as root (uid {} here): it creates the unprivileged \
         user {INTRUDER} and plants files owned by it; run the suite as root, as CI does",
        geteuid()
    );
    let mut last = String::new();
    // Several tests may create the user at once; useradd fails while another
    // holds the passwd lock, so look again and retry.
    for _ in 0..100 {
        if let Some(user) = User::from_name(INTRUDER).expect("read the user database") {
            return (user.uid.as_raw(), user.gid.as_raw());
        }
        let args = ["--system", "--no-create-home"];
        let out = Command::new("useradd")
            .args(args)
            .arg(INTRUDER)
            .output()
            .or_else(|_| {
                Command::new("/usr/sbin/useradd")
                    .args(args)
                    .arg(INTRUDER)
                    .output()
            })
            .expect("run useradd (the tests need it to create an unprivileged user)");
        if out.status.success() {
            continue;
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("cannot create the user {INTRUDER} with useradd: {last}");
}

/// A scratch directory used as `TMPDIR`, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tiffin-runtime-dir-test-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("create the scratch dir");
        // The intruder's own supervisor must be able to reach its directory here.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self(dir)
    }

    /// `<tmp>/tiffin-<uid>`: the base directory tiffin uses when `TMPDIR`
    /// is this directory and `XDG_RUNTIME_DIR` is unset.
    fn base(&self) -> PathBuf {
        self.0.join(format!("tiffin-{}", nix::unistd::getuid()))
    }

    /// A directory owned by the intruder with `mode`.
    fn intruder_dir(&self, name: &str, mode: u32) -> PathBuf {
        let (uid, gid) = intruder();
        let dir = self.0.join(name);
        std::fs::create_dir(&dir).unwrap();
        chown(&dir, Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        dir
    }

    /// Plants the base directory as the intruder's world-writable directory.
    fn plant_dir(&self) -> PathBuf {
        self.intruder_dir(&format!("tiffin-{}", nix::unistd::getuid()), 0o777)
    }

    /// Plants the base directory as the intruder's symlink to `target`.
    fn plant_symlink(&self, target: &Path) -> PathBuf {
        let (uid, gid) = intruder();
        let link = self.base();
        symlink(target, &link).unwrap();
        lchown(&link, Some(uid), Some(gid)).unwrap();
        link
    }

    /// A `tiffin` command that finds its runtime directory under this
    /// directory (`TMPDIR` here, `XDG_RUNTIME_DIR` unset).
    fn tiffin(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(tiffin_bin());
        cmd.args(args)
            .env("TMPDIR", &self.0)
            .env_remove("XDG_RUNTIME_DIR")
            .env("TIFFIN_LOG", "info")
            .env_remove("TIFFIN_CONFIG")
            .env_remove("TIFFIN_CONFIG_OPTIONS");
        cmd
    }

    /// `tiffin serve-http` on a free port, here; the server must not start
    /// (a server that does start is killed after the timeout).
    fn serve(&self) -> Finished {
        let mut cmd = self.tiffin(&["serve-http", "--host", "127.0.0.1", "--port", "0"]);
        run_with_timeout(&mut cmd, Duration::from_secs(10))
    }

    /// A `tiffin` CLI command (`status`, `scale`), here.
    fn cli(&self, args: &[&str]) -> Finished {
        run_with_timeout(&mut self.tiffin(args), Duration::from_secs(20))
    }

    /// `tiffin serve-http` as root through the harness, with this directory
    /// as `TMPDIR` (an empty `XDG_RUNTIME_DIR` counts as unset).
    fn launch(&self, args: &[&str]) -> Server {
        Launch::http(args)
            .env("TMPDIR", self.0.to_str().unwrap())
            .env("XDG_RUNTIME_DIR", "")
            .start()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tiffin supervisor run by the intruder, with its own private runtime
/// directory (`XDG_RUNTIME_DIR` under the scratch dir); stopped when dropped.
struct IntruderServer {
    child: Child,
    pid: u32,
    runtime_dir: PathBuf,
    log: Arc<Mutex<String>>,
}

impl IntruderServer {
    fn start(scratch: &Scratch) -> Self {
        let (uid, gid) = intruder();
        let xdg = scratch.intruder_dir("intruder-xdg", 0o700);
        let mut child = Command::new(tiffin_bin())
            .args(["serve-http", "--host", "127.0.0.1", "--port", "0"])
            .env("XDG_RUNTIME_DIR", &xdg)
            .env_remove("TMPDIR")
            .env("TIFFIN_LOG", "info")
            .env_remove("TIFFIN_CONFIG")
            .env_remove("TIFFIN_CONFIG_OPTIONS")
            .current_dir("/")
            .uid(uid)
            .gid(gid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tiffin as the intruder");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("supervisor starting") {
                    let _ = tx.send(line.clone());
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let pid = child.id();
        let mut server = Self {
            child,
            pid,
            runtime_dir: PathBuf::new(),
            log,
        };
        let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) else {
            panic!(
                "the intruder's tiffin did not start; log:\n{}",
                server.log.lock().unwrap()
            );
        };
        let dir = line
            .split_whitespace()
            .find_map(|f| f.strip_prefix("runtime_dir="))
            .unwrap_or_else(|| panic!("no runtime_dir in {line}"));
        server.runtime_dir = PathBuf::from(dir);
        assert_eq!(
            server.runtime_dir,
            xdg.join("tiffin").join(pid.to_string()),
            "{line}"
        );
        server
    }
}

impl Drop for IntruderServer {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
        let stopped = eventually(Duration::from_secs(5), || {
            self.child.try_wait().ok().flatten().is_some()
        });
        if !stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Asserts `what` exited with an error (not killed at the timeout) whose
/// stderr contains every one of `needles`.
fn assert_refused(what: &str, run: &Finished, needles: &[&str]) {
    let code = run.status.and_then(|s| s.code());
    assert!(
        code.is_some_and(|c| c != 0),
        "{what}: expected a refusal, got {:?} (None: still running at the timeout) \
         after {:?}\nstdout:\n{}\nstderr:\n{}",
        run.status,
        run.elapsed,
        run.stdout,
        run.stderr
    );
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "{what}: the error should mention {needle:?}\nstderr:\n{}",
            run.stderr
        );
    }
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn serve_refuses_a_planted_world_writable_base_dir() {
    let scratch = Scratch::new("serve-dir");
    let (uid, _) = intruder();
    let planted = scratch.plant_dir();
    let run = scratch.serve();
    assert_refused(
        "serve-http in a base dir planted by another user",
        &run,
        &[
            &planted.display().to_string(),
            &format!("owned by uid {uid}"),
            "0777",
        ],
    );
    assert_eq!(
        entries(&planted),
        Vec::<String>::new(),
        "nothing may be created in the planted dir"
    );
}

#[test]
fn serve_refuses_a_planted_symlink_as_base_dir() {
    let scratch = Scratch::new("serve-link");
    let target = scratch.intruder_dir("intruder-target", 0o777);
    let link = scratch.plant_symlink(&target);
    let run = scratch.serve();
    assert_refused(
        "serve-http with its base dir a symlink planted by another user",
        &run,
        &[&link.display().to_string(), "symlink"],
    );
    assert_eq!(
        entries(&target),
        Vec::<String>::new(),
        "nothing may be created where the symlink points"
    );
}

#[test]
fn serve_refuses_its_own_base_dir_open_to_others() {
    let scratch = Scratch::new("serve-mode");
    let base = scratch.base();
    std::fs::create_dir(&base).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = scratch.serve();
    assert_refused(
        "serve-http with its own base dir at mode 0755",
        &run,
        &[&base.display().to_string(), "0755", "chmod 700"],
    );
}

#[test]
fn status_and_scale_refuse_a_planted_base_dir_leading_to_another_users_supervisor() {
    let scratch = Scratch::new("status-dir");
    let (uid, _) = intruder();
    let theirs = IntruderServer::start(&scratch);
    // The intruder's dir at our base path, with an entry named after their
    // live supervisor that leads to its control socket.
    let planted = scratch.plant_dir();
    symlink(&theirs.runtime_dir, planted.join(theirs.pid.to_string())).unwrap();
    let needles = [
        planted.display().to_string(),
        format!("owned by uid {uid}"),
        "0777".to_string(),
    ];
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    let pid = theirs.pid.to_string();
    for args in [
        &["status", "--json"][..],
        &["status", "--pid", &pid],
        &["scale", "nltk_sentiment", "2"],
    ] {
        let run = scratch.cli(args);
        assert_refused(&format!("tiffin {}", args.join(" ")), &run, &needles);
    }
    std::thread::sleep(Duration::from_millis(300));
    let second: Vec<_> = children_of(theirs.pid)
        .into_iter()
        .filter(|(_, cmd)| cmd.contains("--runner nltk_sentiment --index 2 "))
        .collect();
    assert!(
        second.is_empty(),
        "the intruder's supervisor obeyed our scale request: {second:#?}"
    );
}

#[test]
fn status_refuses_a_planted_symlink_to_another_users_supervisors() {
    let scratch = Scratch::new("status-link");
    let theirs = IntruderServer::start(&scratch);
    let their_base = theirs.runtime_dir.parent().unwrap().to_path_buf();
    let link = scratch.plant_symlink(&their_base);
    let run = scratch.cli(&["status", "--json"]);
    assert_refused(
        "tiffin status with the base dir a symlink to another user's",
        &run,
        &[&link.display().to_string(), "symlink"],
    );
}

#[test]
fn status_refuses_another_users_runtime_dir_given_explicitly() {
    let scratch = Scratch::new("status-explicit");
    let (uid, _) = intruder();
    let theirs = IntruderServer::start(&scratch);
    let dir = theirs.runtime_dir.display().to_string();
    let run = scratch.cli(&["status", "--runtime-dir", &dir]);
    assert_refused(
        "tiffin status --runtime-dir <another user's runtime dir>",
        &run,
        &[&dir, &format!("owned by uid {uid}")],
    );
}

#[test]
fn status_refuses_a_supervisor_of_another_user_behind_a_private_dir() {
    // The directory passes every check (ours, 0700), but its control.sock
    // leads to a socket the intruder's process listens on: only the peer's
    // credentials tell.
    let scratch = Scratch::new("status-peer");
    let (uid, _) = intruder();
    let theirs = IntruderServer::start(&scratch);
    let decoy = scratch.0.join("decoy");
    std::fs::create_dir(&decoy).unwrap();
    std::fs::set_permissions(&decoy, std::fs::Permissions::from_mode(0o700)).unwrap();
    symlink(
        theirs.runtime_dir.join("control.sock"),
        decoy.join("control.sock"),
    )
    .unwrap();
    let run = scratch.cli(&["status", "--runtime-dir", decoy.to_str().unwrap()]);
    assert_refused(
        "tiffin status reaching another user's supervisor",
        &run,
        &[
            &format!("runs as uid {uid}"),
            &format!("pid {}", theirs.pid),
        ],
    );
}

#[test]
fn restarted_worker_refuses_a_swapped_runtime_dir() {
    // A supervisor's directory swapped for a symlink to another user's
    // directory (what the owner of a planted base dir could do) must not
    // receive the data socket of a restarted runner worker.
    let scratch = Scratch::new("worker-swap");
    let server = scratch.launch(&[]);
    let dir = server.runtime_dir.clone();
    let theirs = scratch.intruder_dir("intruder-swap", 0o777);
    std::fs::rename(&dir, scratch.0.join("moved-away")).unwrap();
    symlink(&theirs, &dir).unwrap();
    let victim = child_pids(
        &server,
        "__worker runner --runner nltk_sentiment --index 1 ",
    );
    assert_eq!(victim.len(), 1, "{:#?}", server.children());
    kill(Pid::from_raw(victim[0] as i32), Signal::SIGKILL).unwrap();
    let refusal = format!("refusing to use {}", dir.display());
    let refused = eventually(Duration::from_secs(10), || server.log().contains(&refusal));
    assert!(
        refused,
        "the restarted worker should refuse {} (a symlink now)\nlog:\n{}",
        dir.display(),
        server.log()
    );
    assert_eq!(
        entries(&theirs),
        Vec::<String>::new(),
        "a worker put a socket in another user's directory"
    );
}

#[test]
fn a_private_runtime_dir_under_tmpdir_still_works() {
    let scratch = Scratch::new("normal");
    let server = scratch.launch(&[]);
    let base = scratch.base();
    assert_eq!(
        server.runtime_dir,
        base.join(server.pid().to_string()),
        "the runtime dir should be under TMPDIR"
    );
    for dir in [&base, &server.runtime_dir] {
        let meta = std::fs::symlink_metadata(dir).unwrap();
        assert!(meta.is_dir(), "{} is not a directory", dir.display());
        assert_eq!(meta.mode() & 0o777, 0o700, "{} mode", dir.display());
        assert_eq!(meta.uid(), geteuid().as_raw(), "{} owner", dir.display());
    }
    // Found by scanning TMPDIR, by pid, and by directory.
    let pid = server.pid().to_string();
    let dir = server.runtime_dir.display().to_string();
    for args in [
        &["status", "--json"][..],
        &["status", "--json", "--pid", &pid],
        &["status", "--json", "--runtime-dir", &dir],
    ] {
        let run = scratch.cli(args);
        assert!(
            run.status.is_some_and(|s| s.success()),
            "tiffin {}: {run:?}\nlog:\n{}",
            args.join(" "),
            server.log()
        );
        let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(report["pid"], server.pid(), "{report:#}");
    }
    server.analyse("I love it");
}

#[test]
fn a_runner_refuses_a_data_connection_from_another_user() {
    // The directories keep other users out; if their modes are loosened
    // while serving (an operator's chmod, a backup tool), the runner's own
    // check of the peer's uid (`SO_PEERCRED`) still refuses a process of
    // another user on its data socket, before reading a byte from it.
    let scratch = Scratch::new("data-peer");
    let (uid, gid) = intruder();
    let server = scratch.launch(&[]);
    let sock = server.runtime_dir.join("runner-nltk_sentiment-1.sock");
    assert!(
        eventually(Duration::from_secs(10), || is_socket(&sock)),
        "{}",
        server.log()
    );
    let loosen = |mode: u32| {
        for dir in [&scratch.base(), &server.runtime_dir] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    };
    loosen(0o711);
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o777)).unwrap();
    // As the intruder: connect, send a hello-sized frame, print what comes back.
    let client = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
try:
    s.sendall(bytes([0, 0, 0, 6, 0, 0, 0, 2, 0, 1]))
except OSError:
    pass
got = b""
try:
    while True:
        b = s.recv(256)
        if not b:
            break
        got += b
except OSError as e:
    print("error", e)
print("got", got.hex())
"#;
    let out = Command::new("python3")
        .args(["-c", client, sock.to_str().unwrap()])
        .uid(uid)
        .gid(gid)
        .output()
        .expect("run python3 as the intruder");
    loosen(0o700);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the intruder could not connect: {out:?}"
    );
    assert!(
        stdout.lines().any(|l| l == "got "),
        "the runner answered another user's process: {stdout}"
    );
    let refusal = format!("runs as uid {uid}");
    assert!(
        eventually(Duration::from_secs(5), || server.log().lines().any(|l| l
            .contains("data connection refused")
            && l.contains(&refusal))),
        "no refusal naming uid {uid} in the log:\n{}",
        server.log()
    );
    server.analyse("I love it");
}
