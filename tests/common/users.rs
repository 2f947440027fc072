//! A second real user, for tests of what another user of the same machine
//! can and cannot do to a session.

use std::process::Command;

use super::{Cmd, Env, Output, PCL, is_root, skip};

/// An unprivileged user made for one test, removed on drop.
pub struct TempUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl TempUser {
    /// `None` (after `SKIPPED`) without root and useradd.
    pub fn create() -> Option<TempUser> {
        if !is_root() || !std::path::Path::new("/usr/sbin/useradd").exists() {
            skip("needs root and useradd");
            return None;
        }
        let name = format!("pclsec{}{}", std::process::id(), super::next_id());
        let _ = Command::new("userdel").arg(&name).output();
        let out = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/bin/false"])
            .arg(&name)
            .output()
            .expect("run useradd");
        assert!(out.status.success(), "useradd: {out:?}");
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").arg(flag).arg(&name).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        Some(TempUser {
            uid: id("-u"),
            gid: id("-g"),
            name,
        })
    }

    /// `program ARGS` as this user, with the env's environment.
    pub fn cmd(&self, env: &Env, program: &str) -> Cmd {
        env.cmd("setpriv")
            .args([
                format!("--reuid={}", self.uid),
                format!("--regid={}", self.gid),
                "--clear-groups".into(),
                program.into(),
            ])
            .current_dir("/")
            .timeout_secs(30)
    }

    /// `pcl ARGS` as this user, with the env's runtime dir and session.
    pub fn pcl(&self, env: &Env, args: &[&str]) -> Output {
        self.cmd(env, PCL).args(args).run()
    }

    /// A bash script run as this user.
    pub fn sh(&self, env: &Env, script: &str) -> Output {
        self.cmd(env, "/bin/bash").args(["-c", script]).run()
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}
