//! Who may drive a session, and what a session gives away.
//!
//! The session's only secrets are the private keys of the self-signed
//! certificates the daemon and each engine host make for themselves in
//! memory (`transport::Identity`); they are never serialized, so they
//! must appear in no argv, no environment and no log. What travels on an
//! engine host's stdin is the fingerprint of the daemon's certificate,
//! which is public. There is nothing else secret: the tests below find
//! the real keys in the processes' memory and look for them everywhere a
//! leak would show.
//!
//! The rogue QUIC peers are in `peer_auth.rs`.

mod common;

use common::users::TempUser;
use common::*;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pcl::protocol::session::Reply;

fn socket_of(env: &Env) -> PathBuf {
    env.runtime_dir()
        .join("pcl")
        .join(&env.session)
        .join("sock")
}

#[test]
fn security_another_user_cannot_use_the_session_socket() {
    let Some(user) = TempUser::create() else {
        return;
    };
    let env = Env::new();
    env.up([env.cluster_local(1)]);

    // The private directory stops them first...
    for verb in [&["status"][..], &["px", "id"], &["down"]] {
        let out = user.pcl(&env, verb);
        out.clone().failure();
        assert!(
            out.stderr.contains("belongs to another user"),
            "a clear refusal\n{}",
            out.describe()
        );
        assert!(out.stdout.is_empty(), "{}", out.describe());
    }

    // ...and with the directories opened up (a mistake the user could
    // make), the daemon's uid check still refuses, with the same words.
    let sock = socket_of(&env);
    let mut opened = Vec::new();
    for dir in sock.ancestors().skip(1) {
        opened.push((dir.to_path_buf(), fs::metadata(dir).unwrap().permissions()));
        fs::set_permissions(dir, fs::Permissions::from_mode(0o711)).unwrap();
        if dir == env.path() {
            break;
        }
    }
    fs::set_permissions(&sock, fs::Permissions::from_mode(0o666)).unwrap();
    let pwned = format!("/tmp/pcl-security-pwned-{}", std::process::id());
    let out = user.pcl(&env, &["px", &format!("touch {pwned}")]);
    for (dir, mode) in opened {
        fs::set_permissions(dir, mode).unwrap();
    }
    fs::set_permissions(&sock, fs::Permissions::from_mode(0o600)).unwrap();
    out.clone().failure();
    assert!(
        out.stderr.contains("belongs to another user"),
        "the daemon refuses another uid\n{}",
        out.describe()
    );
    assert!(!Path::new(&pwned).exists(), "the other user's command ran");

    // The owner is still served.
    env.px(["true"]).success();
    env.down();
    assert_nothing_left(&env.session);
}

/// PKCS#8 DER of a P-256 key (what rcgen makes), up to the private scalar.
const P256_PKCS8_PREFIX: &[u8] = &[
    0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02,
    0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x6d, 0x30, 0x6b, 0x02,
    0x01, 0x01, 0x04, 0x20,
];

/// Every private P-256 scalar held in `pid`'s writable memory.
fn private_keys_in_memory(pid: i32) -> Vec<[u8; 32]> {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let Ok(mut mem) = fs::File::open(format!("/proc/{pid}/mem")) else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !perms.starts_with("rw") {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        if end - start > 1 << 30 {
            continue;
        }
        let mut buf = vec![0u8; (end - start) as usize];
        if mem.seek(SeekFrom::Start(start)).is_err() || mem.read_exact(&mut buf).is_err() {
            continue;
        }
        let n = P256_PKCS8_PREFIX.len();
        for at in memchr_all(&buf, P256_PKCS8_PREFIX) {
            if let Some(scalar) = buf.get(at + n..at + n + 32) {
                let key: [u8; 32] = scalar.try_into().unwrap();
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
    }
    keys
}

fn memchr_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..=c.len() {
            s.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
        }
    }
    s
}

#[test]
fn security_private_keys_appear_in_no_argv_environment_or_log() {
    let Some(sshd) = Sshd::start() else {
        return;
    };
    let env = Env::new();
    let cluster = env.write_cluster(&[sshd.host().engines(2), Host::local(2)]);
    env.up([&cluster]);
    // Children of the shells count too.
    env.px(["sleep 1000 &"]).success();

    let procs = session_processes(&env.session);
    let mut pids: Vec<i32> = procs.iter().map(|p| p.pid).collect();
    for p in &procs {
        // The guard beside each engine host, and anything else they run.
        pids.extend(children_of(p.pid));
    }
    pids.sort_unstable();
    pids.dedup();
    let daemon = daemon_pids(&env.session);
    let engines = engine_pids(&env.session);
    assert_eq!(daemon.len(), 1);
    assert_eq!(engines.len(), 2);
    assert!(pids.len() >= 1 + 2 + 4 + 4, "found {pids:?}");

    // The real keys, from the processes that hold them.
    let mut keys = Vec::new();
    for &pid in daemon.iter().chain(&engines) {
        let found = private_keys_in_memory(pid);
        assert!(
            !found.is_empty(),
            "no P-256 private key found in the memory of pid {pid}: the scan is broken"
        );
        keys.extend(found);
    }
    let mut needles: Vec<(String, Vec<u8>)> = vec![
        ("PEM marker".into(), b"PRIVATE KEY".to_vec()),
        ("PKCS#8 in base64".into(), b"MIGHAgEAMBMGByqGSM49".to_vec()),
        (
            "PKCS#8 in hex".into(),
            b"308187020100301306072a8648ce3d".to_vec(),
        ),
    ];
    for key in &keys {
        needles.push(("a private key, raw".into(), key.to_vec()));
        needles.push(("a private key, hex".into(), hex::encode(key).into_bytes()));
        needles.push((
            "a private key, HEX".into(),
            hex::encode_upper(key).into_bytes(),
        ));
        // Base64 of the scalar at each of the three alignments.
        for skip in 0..3 {
            let b = base64(&key[skip..]);
            needles.push((
                "a private key, base64".into(),
                b.as_bytes()[4..b.len() - 4].to_vec(),
            ));
        }
    }

    let mut places: Vec<(String, Vec<u8>)> = Vec::new();
    for &pid in &pids {
        for what in ["cmdline", "environ"] {
            if let Ok(bytes) = fs::read(format!("/proc/{pid}/{what}")) {
                places.push((format!("/proc/{pid}/{what}"), bytes));
            }
        }
    }
    assert!(places.len() >= 2 * pids.len() - 2, "could read /proc");
    let logs = env.logs();
    assert!(!logs.is_empty(), "the session has a log");
    places.push(("the session log".into(), logs.into_bytes()));
    places.push(("sshd's log".into(), sshd.log().into_bytes()));

    for (place, bytes) in &places {
        for (what, needle) in &needles {
            assert!(
                memchr_all(bytes, needle).is_empty(),
                "{what} found in {place}"
            );
        }
    }

    env.down();
    assert_nothing_left(&env.session);
}

/// Send raw bytes to the session socket; return the daemon's reply.
fn raw_request(env: &Env, bytes: &[u8]) -> Option<Reply> {
    let mut stream = UnixStream::connect(socket_of(env)).expect("connect to the session");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).expect("write");
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).expect("a whole reply");
    Some(pcl::transport::decode(&body).expect("a well-formed reply"))
}

#[test]
fn security_malformed_frames_get_an_error_and_the_daemon_keeps_serving() {
    let env = Env::new();
    env.up([env.cluster_local(1)]);
    let daemon = daemon_pids(&env.session)[0];

    let garbage: &[&[u8]] = &[
        // An unknown request variant.
        &[0, 0, 0, 1, 0xff],
        // A known variant with a truncated body.
        &[0, 0, 0, 2, 4, 0xff],
        // Non-UTF-8 where a string is expected.
        &[0, 0, 0, 6, 4, 3, 0xff, 0xfe, 0xfd, 0],
        // An empty frame.
        &[0, 0, 0, 0],
    ];
    for bytes in garbage {
        match raw_request(&env, bytes) {
            Some(Reply::Error(e)) => assert!(e.contains("bad request"), "{e}"),
            other => panic!("{bytes:?}: expected an error reply, got {other:?}"),
        }
        env.pcl(["status"]).run().success();
    }

    // A length prefix of 4 GiB is refused before anything is allocated
    // (VmPeak: a zeroed allocation would not be touched, so not resident).
    let peak = status_kib(daemon, "VmPeak");
    let hwm = status_kib(daemon, "VmHWM");
    let mut huge = u32::MAX.to_be_bytes().to_vec();
    huge.extend_from_slice(&[0u8; 64]);
    match raw_request(&env, &huge) {
        Some(Reply::Error(e)) => assert!(e.contains("larger than"), "{e}"),
        other => panic!("expected an error reply, got {other:?}"),
    }
    let grew = status_kib(daemon, "VmPeak").saturating_sub(peak);
    assert!(
        grew < 256 << 10,
        "the daemon's address space grew by {grew} KiB"
    );
    let grew = status_kib(daemon, "VmHWM").saturating_sub(hwm);
    assert!(
        grew < 4 << 10,
        "the daemon's resident peak grew by {grew} KiB"
    );

    // A peer that connects and says nothing, or hangs up mid-frame, costs
    // nothing either.
    drop(UnixStream::connect(socket_of(&env)).unwrap());
    let mut half = UnixStream::connect(socket_of(&env)).unwrap();
    half.write_all(&[0, 0, 1, 0, 1, 2]).unwrap();
    drop(half);

    env.px(["echo still-here"])
        .success()
        .assert_stdout("[stdout:0] still-here\n");
    assert_eq!(daemon_pids(&env.session), vec![daemon]);
    env.down();
    assert_nothing_left(&env.session);
}

/// What another user plants where an engine host's scratch files could go
/// (`/tmp`, here, as over ssh without `XDG_RUNTIME_DIR`): directories named
/// as a predictable scratch place would be, for the next 1,500 pids, each
/// open to all, holding a link to a file of ours and a script of theirs.
/// None of it may be read, written or run by a session.
#[test]
fn security_nothing_another_user_planted_in_tmp_is_used() {
    let Some(sshd) = Sshd::start() else {
        return;
    };
    let Some(user) = TempUser::create() else {
        return;
    };
    let env = Env::new();
    let victim = env.write("precious", "root's own bytes\n");
    fs::set_permissions(env.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let ran = format!("/tmp/pcl-attacker-ran-{}", std::process::id());
    let last: u32 = fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let (first, end) = (last + 1, last + 1500);
    let plant = format!(
        "for p in $(seq {first} {end}); do d=/tmp/pcl-engine-$p; mkdir -m 777 $d || continue; \
         ln -s {victim} $d/batch-0.sh; ln -s {victim} $d/stop-0; \
         printf 'id > {ran}\\n' > $d/batch-1.sh; chmod 777 $d/batch-1.sh; done",
        victim = victim.display()
    );
    user.sh(&env, &plant).success();
    let planted = |p: u32| PathBuf::from(format!("/tmp/pcl-engine-{p}"));

    let cluster = env.write_cluster(&[sshd.host().engines(2)]);
    env.up([&cluster]);
    let out = env
        .pcl(["map", "echo {}", "a", "b", "c", "d"])
        .run()
        .success();
    assert_eq!(out.stdout_str(), "a\nb\nc\nd\n");
    env.pcl(["scatter", "xs", "1", "2", "3"]).run().success();
    env.pcl(["interrupt"]).run().success();

    // The engine host's own scratch place is a fresh private directory.
    let ours: Vec<PathBuf> = fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("pcl-engine-")
                && !(first..=end).any(|pid| planted(pid) == *p)
                && fs::symlink_metadata(p).is_ok_and(|m| {
                    use std::os::unix::fs::MetadataExt;
                    m.uid() == 0
                })
        })
        .collect();
    // (Other tests' engine hosts may have theirs here too.)
    assert!(
        !ours.is_empty(),
        "no scratch directory in /tmp: the test ran none"
    );
    for dir in &ours {
        let mode = fs::symlink_metadata(dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is mode {mode:o}", dir.display());
    }
    env.down();

    let mut touched = Vec::new();
    for pid in first..=end {
        let dir = planted(pid);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        if names != ["batch-0.sh", "batch-1.sh", "stop-0"] {
            touched.push(format!("{}: {names:?}", dir.display()));
        }
        let _ = fs::remove_dir_all(&dir);
    }
    assert!(
        touched.is_empty(),
        "planted directories were used: {touched:?}"
    );
    assert_eq!(
        fs::read_to_string(&victim).unwrap(),
        "root's own bytes\n",
        "a planted link made the session overwrite a file of its user"
    );
    assert!(!Path::new(&ran).exists(), "a planted script ran");
    let _ = fs::remove_file(&ran);
}
