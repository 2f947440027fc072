//! `pcl console` on a real pseudo-terminal: commands run with their state
//! kept between them, `:targets` changes where they run, Ctrl-C interrupts
//! a command and gives the prompt back, Ctrl-D leaves.

mod common;

use common::*;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A program on a terminal of its own: what it showed, and its keyboard.
struct Terminal {
    keys: std::fs::File,
    screen: Arc<Mutex<String>>,
    child: std::process::Child,
}

impl Terminal {
    fn start(env: &Env, args: &[&str]) -> Terminal {
        let (mut main, mut side) = (0, 0);
        // SAFETY: openpty writes two descriptors it opened into the ints.
        let opened = unsafe {
            libc::openpty(
                &mut main,
                &mut side,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(opened, 0, "openpty");
        // SAFETY: both descriptors are ours from here on.
        let (main, side) = unsafe { (OwnedFd::from_raw_fd(main), OwnedFd::from_raw_fd(side)) };
        let mut command = Command::new(PCL);
        command
            .args(args)
            .env("HOME", env.home())
            .env("XDG_RUNTIME_DIR", env.runtime_dir())
            .env("PCL_SESSION", &env.session)
            .env("TERM", "dumb")
            .stdin(Stdio::from(side.try_clone().unwrap()))
            .stdout(Stdio::from(side.try_clone().unwrap()))
            .stderr(Stdio::from(side));
        // SAFETY: setsid and ioctl are async-signal-safe; the terminal on
        // stdin becomes the controlling one, so Ctrl-C is a SIGINT.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 0);
                Ok(())
            });
        }
        let child = command.spawn().expect("start pcl console");
        let screen = Arc::new(Mutex::new(String::new()));
        let mut reader = std::fs::File::from(main.try_clone().unwrap());
        let shown = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                shown
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let _ = main.as_raw_fd();
        Terminal {
            keys: std::fs::File::from(main),
            screen,
            child,
        }
    }

    fn type_keys(&mut self, keys: &str) {
        self.keys.write_all(keys.as_bytes()).unwrap();
    }

    /// Wait until the screen, past `from`, shows `text`; the offset after it.
    #[track_caller]
    fn expect(&self, from: usize, text: &str) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            {
                let screen = self.screen.lock().unwrap();
                if let Some(at) = screen.get(from..).and_then(|s| s.find(text)) {
                    return from + at + text.len();
                }
                if Instant::now() > deadline {
                    panic!("no {text:?} on the screen after offset {from}:\n{screen}");
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn shown(&self) -> String {
        self.screen.lock().unwrap().clone()
    }
}

#[test]
fn the_console_keeps_state_changes_targets_survives_ctrl_c_and_ends_on_ctrl_d() {
    let env = Env::new();
    env.up([env.cluster_local(2)]);
    let mut term = Terminal::start(&env, &["console"]);
    let at = term.expect(0, "pcl [all] 0> ");

    term.type_keys("x=5\r");
    let at = term.expect(at, "pcl [all] 0> ");
    term.type_keys("echo $((x + 1))\r");
    let at = term.expect(at, "[stdout:0] 6");
    let at = term.expect(at, "pcl [all] 0> ");
    assert!(term.shown().contains("[stdout:1] 6"), "{}", term.shown());

    // A line ending in \ goes on on the next.
    term.type_keys("echo one \\\r");
    let at = term.expect(at, "... ");
    term.type_keys("two\r");
    let at = term.expect(at, "one two");

    term.type_keys(":targets 1\r");
    let at = term.expect(at, "pcl [1] 0> ");
    term.type_keys("echo only\r");
    let at = term.expect(at, "[stdout:1] only");
    let at = term.expect(at, "pcl [1] 0> ");
    assert!(!term.shown().contains("[stdout:0] only"));

    // Ctrl-C interrupts the command, never the console.
    term.type_keys("sleep 30\r");
    std::thread::sleep(Duration::from_millis(800));
    term.type_keys("\x03");
    let at = term.expect(at, "pcl [1] 130> ");
    term.type_keys("echo after $x\r");
    let at = term.expect(at, "[stdout:1] after 5");
    term.expect(at, "pcl [1] 0> ");

    term.type_keys("\x04");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = term.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the console did not end on Ctrl-D"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}\n{}", term.shown());
}
