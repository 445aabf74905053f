//! The container image (`Containerfile`), built and taken apart with the real
//! tools: hadolint lints the file, `scripts/container prebuilt` builds the
//! FROM-scratch image with podman (a static binary linked from the tests'
//! own dev build), `podman image inspect` shows how it runs (non-root user,
//! entrypoint, ports, runtime volume, size), and the binary inside runs
//! from the image's own filesystem (`chroot` into `podman image mount`),
//! which only a self-contained binary can: a dynamic one finds no loader.
//! Containers cannot be started on the development machine, so the image is
//! run the way a container runtime would run it, minus the isolation: a copy
//! of its filesystem as the root (`chroot`), the `/proc` and `/dev` every
//! runtime provides bind-mounted in a private mount namespace (`unshare`, so
//! the mounts go away with the process), the root read-only and the image's
//! volumes as tmpfs (as `deployment.yaml` mounts them: `readOnlyRootFilesystem`
//! and emptyDir in memory), only the image's environment, its user, its
//! entrypoint and command. The supervisor there re-executes itself for its
//! workers, keeps its sockets under `/run/tiffin`, serves, and drains on
//! SIGTERM. tests/it/kubernetes.rs runs the manifests' configuration.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Finished, Launch, free_port, http, require_tool, run_with_timeout};

/// The image's user: numeric (scratch has no /etc/passwd), not root.
const USER: &str = "65532:65532";

/// What the image may hold besides its binary: directory entries and the
/// layer's metadata, a few kilobytes.
const MAX_OVERHEAD_BYTES: u64 = 1024 * 1024;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn run(cmd: &mut Command, timeout: Duration) -> Finished {
    run_with_timeout(cmd, timeout)
}

fn ok(f: &Finished) -> bool {
    f.status.is_some_and(|s| s.success())
}

fn hadolint() -> PathBuf {
    let p = repo("target/pyvenv-deploy/bin/hadolint");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup/30-deploy (scripts/test runs it)",
        p.display()
    );
    p
}

#[test]
fn hadolint_passes_the_containerfile_at_every_level() {
    let f = run(
        Command::new(hadolint())
            .args(["--failure-threshold", "style"])
            .arg(repo("Containerfile")),
        Duration::from_secs(60),
    );
    assert!(ok(&f), "hadolint:\n{}{}", f.stdout, f.stderr);
    // And it does report: an unpinned apt-get in a shell form RUN.
    let dir = std::env::temp_dir().join(format!("tiffin-hadolint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch");
    let bad = dir.join("Containerfile");
    std::fs::write(&bad, "FROM debian:12\nRUN apt-get install curl\n").expect("write");
    let f = run(
        Command::new(hadolint())
            .args(["--failure-threshold", "style"])
            .arg(&bad),
        Duration::from_secs(60),
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !ok(&f) && f.stdout.contains("DL3008"),
        "{}{}",
        f.stdout,
        f.stderr
    );
}

/// An image tag of this test run, removed on drop.
struct Image {
    podman: PathBuf,
    tag: String,
    mounted: bool,
}

impl Drop for Image {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new(&self.podman)
                .args(["image", "unmount", &self.tag])
                .output();
        }
        let _ = Command::new(&self.podman)
            .args(["rmi", "-f", &self.tag])
            .output();
    }
}

/// Whether the ELF file at `path` asks for a program interpreter (ld.so),
/// i.e. is dynamically linked: a `PT_INTERP` program header.
fn has_interpreter(path: &Path) -> bool {
    let elf = std::fs::read(path).expect("read binary");
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "64-bit");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&elf[o..o + 8]);
        u64::from_le_bytes(b) as usize
    };
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let p = phoff + i * phentsize;
        u32::from_le_bytes([elf[p], elf[p + 1], elf[p + 2], elf[p + 3]]) == 3
    })
}

#[test]
fn the_scratch_image_builds_runs_as_non_root_and_its_binary_runs_from_the_image() {
    let podman = require_tool("podman");
    let tag = format!("localhost/tiffin-test:{}", std::process::id());
    let mut image = Image {
        podman: podman.clone(),
        tag: tag.clone(),
        mounted: false,
    };
    let f = run(
        Command::new(repo("scripts/container"))
            .args(["prebuilt", &tag])
            .current_dir(repo("")),
        Duration::from_secs(600),
    );
    assert!(
        ok(&f),
        "scripts/container prebuilt:\n{}{}",
        f.stdout,
        f.stderr
    );

    let f = run(
        Command::new(&podman).args(["image", "inspect", &tag]),
        Duration::from_secs(60),
    );
    assert!(ok(&f), "{}", f.stderr);
    let inspect: serde_json::Value = serde_json::from_str(&f.stdout).expect("inspect JSON");
    let i = &inspect[0];
    let config = &i["Config"];
    eprintln!(
        "image {tag}: {} bytes, user {}, entrypoint {}, cmd {}",
        i["Size"], config["User"], config["Entrypoint"], config["Cmd"]
    );
    assert_eq!(config["User"], USER, "{config}");
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/usr/local/bin/tiffin"]),
        "{config}"
    );
    assert_eq!(config["Cmd"][0], "serve-http", "{config}");
    for port in ["3000/tcp", "3001/tcp"] {
        assert!(config["ExposedPorts"][port].is_object(), "{port}: {config}");
    }
    assert!(config["Volumes"]["/run/tiffin"].is_object(), "{config}");
    let env: Vec<&str> = config["Env"]
        .as_array()
        .expect("Env")
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    assert!(env.contains(&"XDG_RUNTIME_DIR=/run/tiffin"), "{env:?}");
    assert_eq!(config["StopSignal"], "SIGTERM", "{config}");
    let size = i["Size"].as_u64().expect("Size");
    assert_eq!(
        i["RootFS"]["Layers"].as_array().map(Vec::len),
        Some(1),
        "one layer: {}",
        i["RootFS"]
    );

    // The image's filesystem: the binary and the two writable directories, nothing else.
    let f = run(
        Command::new(&podman).args(["image", "mount", &tag]),
        Duration::from_secs(60),
    );
    assert!(ok(&f), "podman image mount: {}", f.stderr);
    image.mounted = true;
    let root = PathBuf::from(f.stdout.trim());
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read image dir").flatten() {
            let path = e.path();
            let rel = path
                .strip_prefix(&root)
                .expect("under root")
                .display()
                .to_string();
            if e.file_type().expect("file type").is_dir() {
                stack.push(path);
            }
            files.push(rel);
        }
    }
    files.sort();
    assert_eq!(
        files,
        [
            "run",
            "run/tiffin",
            "tmp",
            "usr",
            "usr/local",
            "usr/local/bin",
            "usr/local/bin/tiffin"
        ],
        "the image's files"
    );
    use std::os::unix::fs::PermissionsExt;
    for dir in ["run/tiffin", "tmp"] {
        let mode = std::fs::metadata(root.join(dir))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o7777,
            0o1777,
            "{dir} is writable by any user (like /tmp)"
        );
    }
    let binary = root.join("usr/local/bin/tiffin");
    assert!(!has_interpreter(&binary), "the binary is statically linked");
    // The image weighs what its binary weighs: nothing else is in it. (The
    // binary here is the tests' unoptimised one; README.md gives the
    // release image's size.)
    let binary_bytes = std::fs::metadata(&binary).expect("stat binary").len();
    assert!(
        size <= binary_bytes + MAX_OVERHEAD_BYTES,
        "image is {size} bytes, its binary {binary_bytes}: more than {MAX_OVERHEAD_BYTES} bytes besides"
    );
    assert!(
        has_interpreter(&common::tiffin_bin()),
        "the ELF check tells a dynamic binary apart"
    );

    // Run it from the image's own root, as the image's user.
    let chroot = require_tool("chroot");
    let f = run(
        Command::new(&chroot)
            .arg(format!("--userspec={USER}"))
            .arg(&root)
            .args(["/usr/local/bin/tiffin", "--version"]),
        Duration::from_secs(60),
    );
    assert!(
        ok(&f),
        "tiffin --version in the image: {}{}",
        f.stdout,
        f.stderr
    );
    assert_eq!(
        f.stdout.trim(),
        format!("tiffin {}", env!("CARGO_PKG_VERSION")),
        "{f:?}"
    );
    let f = run(
        Command::new(&chroot)
            .arg(format!("--userspec={USER}"))
            .arg(&root)
            .args(["/usr/local/bin/tiffin", "list"]),
        Duration::from_secs(60),
    );
    assert!(ok(&f) && f.stdout.contains("sentiment_analyzer"), "{f:?}");

    // Serve from a copy of the image's root (the mount is the image store's).
    let copy = std::env::temp_dir().join(format!("tiffin-image-root-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&copy);
    let f = run(
        Command::new("cp").arg("-a").arg(&root).arg(&copy),
        Duration::from_secs(60),
    );
    assert!(ok(&f), "copy the image root: {}", f.stderr);
    let served = serve_from(&copy, config, &env);
    let _ = std::fs::remove_dir_all(&copy);
    served.unwrap_or_else(|e| panic!("{e}"));
}

/// Runs the image's entrypoint and command in `root` as a container runtime
/// would (see the module doc), on free ports; checks that it serves as the
/// image's user with its runtime directory under `/run/tiffin`, and drains.
fn serve_from(root: &Path, config: &serde_json::Value, env: &[&str]) -> Result<(), String> {
    for dir in ["proc", "dev"] {
        std::fs::create_dir_all(root.join(dir)).map_err(|e| format!("mkdir {dir}: {e}"))?;
    }
    let words = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let metrics_port = free_port();
    let mut command = words(&config["Entrypoint"]);
    let cmd = words(&config["Cmd"]);
    let mut i = 0;
    while i < cmd.len() {
        command.push(cmd[i].clone());
        if cmd[i] == "--metrics-port" {
            command.push(metrics_port.to_string());
            i += 1;
        }
        i += 1;
    }
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let r = quote(&root.display().to_string());
    let script = format!(
        "mount --bind {r} {r} && mount -o remount,bind,ro {r} && \
         mount --bind /proc {r}/proc && mount --bind /dev {r}/dev && \
         mount -t tmpfs -o mode=1777 tmpfs {r}/run/tiffin && \
         mount -t tmpfs -o mode=1777 tmpfs {r}/tmp && \
         exec env -i {env} {chroot} --userspec={USER} {r} {command} \"$@\"",
        env = env.iter().map(|e| quote(e)).collect::<Vec<_>>().join(" "),
        chroot = quote(&require_tool("chroot").display().to_string()),
        command = command
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(" "),
    );
    // `Launch` appends --host 127.0.0.1 --port 0 (into "$@") and waits for /readyz.
    let unshare = require_tool("unshare");
    let mut server = Launch::subcommand(
        "--mount",
        &["--propagation", "private", "sh", "-c", &script, "sh"],
    )
    .bin(unshare)
    .start();
    let log = server.log();
    let answer = server.analyse("I love this product!");
    if answer["is_positive"] != true {
        return Err(format!("analysis: {answer}\n{log}"));
    }
    let scrape = http(
        &format!("127.0.0.1:{metrics_port}"),
        "GET",
        "/metrics",
        &[],
        b"",
    )
    .map_err(|e| format!("metrics port: {e}"))?;
    if scrape.status != 200 || !scrape.text().contains("bentoml_api_server_request_total") {
        return Err(format!("metrics port: {}", scrape.text()));
    }
    // The runtime directory is where the image says, made by the image's user.
    let inside = server.runtime_dir.clone();
    if !inside.starts_with("/run/tiffin") {
        return Err(format!("runtime dir {}", inside.display()));
    }
    // Seen through the supervisor's own root (its mount namespace's tmpfs).
    let outside = PathBuf::from(format!("/proc/{}/root", server.pid()))
        .join(inside.strip_prefix("/").unwrap_or(&inside));
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(&outside)
        .map(|m| m.uid())
        .map_err(|e| format!("{}: {e}", outside.display()))?;
    let uid: u32 = USER
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or(0);
    if owner != uid {
        return Err(format!("{} owned by {owner}, not {uid}", outside.display()));
    }
    let children = server.children();
    if children.len() < 2 {
        return Err(format!("workers: {children:?}\n{}", server.log()));
    }
    for (pid, cmd) in &children {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let real_uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|u| u.parse::<u32>().ok());
        if real_uid != Some(uid) {
            return Err(format!("worker {pid} ({cmd}) runs as {real_uid:?}"));
        }
    }
    let exit = server.signal_and_wait(libc::SIGTERM);
    if !exit.success() {
        return Err(format!("SIGTERM: {exit:?}\n{}", server.log()));
    }
    // Nothing was written outside the volumes (the root is read-only, so a
    // write there would have failed the start or a request).
    let written: Vec<_> = ["run/tiffin", "tmp"]
        .iter()
        .filter_map(|d| std::fs::read_dir(root.join(d)).ok())
        .flat_map(|entries| entries.flatten().map(|e| e.path()))
        .collect();
    if !written.is_empty() {
        return Err(format!(
            "written to the image's own directories: {written:?}"
        ));
    }
    Ok(())
}
