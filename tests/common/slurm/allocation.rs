//! Allocations held for tests, as a shell inside `salloc` has them.

use std::fs;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::super::{Cmd, stop_child};
use super::{START_TIMEOUT, Slurm, wait_for};

impl Slurm {
    /// Hold an allocation, as `salloc ARGS` does for a shell, until the
    /// returned value is dropped.
    #[track_caller]
    pub fn salloc(&self, args: &[&str]) -> Allocation {
        let vars = self.path(&format!("alloc-{}.env", super::super::next_id()));
        let holder = format!(
            "env > '{}.tmp' && mv '{0}.tmp' '{0}'; exec cat >/dev/null",
            vars.display()
        );
        let mut child = Command::new("salloc")
            .args(args)
            .args(["--", "sh", "-c", &holder])
            .env("SLURM_CONF", &self.conf)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start salloc");
        let stdin = child.stdin.take();
        let granted = wait_for(START_TIMEOUT, "the allocation", || vars.exists());
        let mut allocation = Allocation {
            salloc: child,
            stdin,
            vars: Vec::new(),
            conf: self.conf.clone(),
        };
        if let Err(why) = granted {
            let _ = allocation.salloc.kill();
            let mut said = String::new();
            if let Some(mut err) = allocation.salloc.stderr.take() {
                let _ = err.read_to_string(&mut said);
            }
            panic!("salloc {args:?}: {why}\n{said}\n{}", self.logs());
        }
        allocation.vars = fs::read_to_string(&vars)
            .expect("the allocation's variables")
            .lines()
            .filter(|l| l.starts_with("SLURM_"))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        allocation
    }
}

/// An allocation held for a test (see [`Slurm::salloc`]): its `SLURM_*`
/// variables, as a shell inside `salloc` has them. Given back on drop.
pub struct Allocation {
    salloc: Child,
    stdin: Option<ChildStdin>,
    vars: Vec<(String, String)>,
    conf: PathBuf,
}

impl Allocation {
    pub fn job(&self) -> String {
        self.var("SLURM_JOB_ID").expect("SLURM_JOB_ID").to_string()
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `cmd` run inside the allocation: with its variables.
    pub fn inside(&self, mut cmd: Cmd) -> Cmd {
        for (k, v) in &self.vars {
            cmd = cmd.env(k, v);
        }
        cmd
    }

    /// Give the allocation back now and wait for salloc to end.
    pub fn release(mut self) {
        self.give_back();
    }

    fn give_back(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.salloc.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        if let Some(job) = self.var("SLURM_JOB_ID") {
            let _ = Command::new("scancel")
                .arg(job)
                .env("SLURM_CONF", &self.conf)
                .output();
        }
        stop_child(&mut self.salloc);
    }
}

impl Drop for Allocation {
    fn drop(&mut self) {
        self.give_back();
    }
}
