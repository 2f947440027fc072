//! Zero-install: where a host has no pcl, the running binary is uploaded
//! over the same SSH channel into a content-addressed cache
//! (`~/.cache/pcl/<version>-<hash>`), verified, and renamed into place, so
//! concurrent launches never run a half-written file.

use std::io::Read;
use std::path::PathBuf;
use std::sync::OnceLock;

use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdin;

use super::LaunchError;

pub(super) const BOOT_PREFIX: &str = "PCL-BOOT";

struct Binary {
    path: PathBuf,
    size: u64,
    sha256: String,
}

fn binary() -> Result<&'static Binary, LaunchError> {
    static BINARY: OnceLock<Binary> = OnceLock::new();
    if let Some(b) = BINARY.get() {
        return Ok(b);
    }
    let path = std::env::current_exe()?;
    let mut file = std::fs::File::open(&path)?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        context.update(&buf[..n]);
        size += n as u64;
    }
    let sha256 = hex::encode(context.finish());
    Ok(BINARY.get_or_init(|| Binary { path, size, sha256 }))
}

/// `sh` single-quoting.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What ssh runs on the host: first one `PCL-BOOT` line (`ok`, or `upload
/// <uname -sm>` and then read exactly the binary's size from stdin), then
/// exec the engine host, which reads its configuration from the same stdin.
pub(super) fn remote_script(
    engine_path: Option<&str>,
    session: &str,
) -> Result<String, LaunchError> {
    let engine_args = format!("engine --session {}", sh_quote(session));
    let script = match engine_path {
        Some(path) => {
            let path = match path.strip_prefix("~/") {
                Some(rest) => format!("\"$HOME\"/{}", sh_quote(rest)),
                None => sh_quote(path),
            };
            format!("echo '{BOOT_PREFIX} ok'; exec {path} {engine_args}")
        }
        None => {
            let bin = binary()?;
            let version = env!("CARGO_PKG_VERSION");
            let name = format!("pcl-{version}-{}", &bin.sha256[..16]);
            // The lock makes concurrent launches on one host (several
            // sessions, or hosts sharing a home) upload once; it is
            // released before exec so the engine does not hold it.
            format!(
                "d=\"$HOME/.cache/pcl\"; f=\"$d/{name}\"; mkdir -p \"$d\" || exit 1; \
                 if command -v flock >/dev/null; then exec 9>\"$d/.lock\" && flock 9; fi; \
                 if [ -x \"$f\" ]; then echo '{BOOT_PREFIX} ok'; else \
                 echo \"{BOOT_PREFIX} upload $(uname -sm)\"; \
                 t=\"$f.$$.tmp\"; head -c {size} > \"$t\" && \
                 [ \"$(sha256sum < \"$t\" | cut -c1-64)\" = {sha} ] && chmod 700 \"$t\" && \
                 mv -f \"$t\" \"$f\" || {{ rm -f \"$t\"; echo 'pcl: upload of the engine binary failed' >&2; exit 1; }}; \
                 fi; exec 9>&-; exec \"$f\" {engine_args}",
                size = bin.size,
                sha = bin.sha256,
            )
        }
    };
    Ok(format!("exec sh -c {}", sh_quote(&script)))
}

/// Answer one `PCL-BOOT` line: nothing to do, or upload the binary after
/// checking the host runs the same OS and architecture.
pub(super) async fn answer(line: &str, stdin: &mut ChildStdin) -> Result<(), LaunchError> {
    let rest = line[BOOT_PREFIX.len()..].trim();
    if rest == "ok" {
        return Ok(());
    }
    let Some(remote) = rest.strip_prefix("upload ") else {
        return Err(LaunchError::BadHandshake(line.to_string()));
    };
    let local = local_platform();
    if remote.trim() != local {
        return Err(LaunchError::Platform {
            remote: remote.trim().to_string(),
            local,
        });
    }
    let bin = binary()?;
    let mut file = tokio::fs::File::open(&bin.path).await?;
    tokio::io::copy(&mut file, stdin).await?;
    stdin.flush().await?;
    Ok(())
}

/// This machine as `uname -sm` prints it.
fn local_platform() -> String {
    // SAFETY: uname fills a caller-owned struct; the strings it writes are
    // NUL-terminated.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        libc::uname(&mut u);
        let field = |f: &[libc::c_char]| {
            std::ffi::CStr::from_ptr(f.as_ptr())
                .to_string_lossy()
                .into_owned()
        };
        format!("{} {}", field(&u.sysname), field(&u.machine))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
    }

    #[test]
    fn local_platform_matches_uname() {
        let out = std::process::Command::new("uname")
            .arg("-sm")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            local_platform()
        );
    }
}
