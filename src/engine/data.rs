//! The engine side of push, pull, scatter and gather: variables through
//! engine-built shell code (every user byte quoted), files straight to and
//! from the workdir, always through a temporary file renamed into place.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use quinn::{RecvStream, SendStream};
use thiserror::Error;

use super::blocking::off_the_runtime;
use super::guard::Guard;
use super::host::{Engine, Host};
use super::scratch::scratch_dir;
use super::workdir::prepare_workdir;
use super::{Capture, EngineError};
use crate::protocol::data::{
    Bulk, CHUNK, Checksum, DataError, EngineData, check_name, check_remote, read_full,
};
use crate::protocol::engine::{EngineReply, ExecOutcome};
use crate::quoting::ansi_c_quote;
use crate::transport::{MAX_FRAME, write_frame};

/// Why a data request failed on this engine; sent to the daemon as text.
#[derive(Debug, Error)]
pub(super) enum Refused {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{0}")]
    NoEngine(String),
    #[error("variable `{0}` is not set")]
    Unset(String),
    #[error("the shell refused: {0}")]
    Shell(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("checksum mismatch for {0}: the bytes were damaged on the way; nothing was kept")]
    Checksum(String),
    #[error("the transfer was cut off before its end; nothing was kept")]
    CutOff,
    #[error("the session broke the relay protocol: {0}")]
    Protocol(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

pub(super) async fn serve(
    host: &Host,
    op: EngineData,
    send: &mut SendStream,
    recv: &mut RecvStream,
) -> Result<(), EngineError> {
    let result = match op {
        EngineData::SetVars { id, vars } => set_vars(host, id, vars).await,
        EngineData::LoadArray { id, name, nul } => load_array(host, id, &name, nul, recv).await,
        EngineData::WriteFile { id, path } => write_file(host, id, &path, recv).await,
        EngineData::RelayFile(relay) => super::relay::relay_file(host, relay, send, recv).await,
        EngineData::GetVar { id, name, array } => match get_var(host, id, &name, array).await {
            Ok(value) => {
                return send_bytes(send, std::io::Cursor::new(value))
                    .await
                    .map(drop);
            }
            Err(e) => Err(e),
        },
        EngineData::ReadFile { id, path } => match open_remote(host, id, &path).await {
            Ok(file) => {
                return match send_bytes(send, file).await? {
                    Ok(()) => Ok(()),
                    Err(source) => {
                        let e = Refused::Read { path, source };
                        Ok(write_frame(send, &EngineReply::Error(e.to_string())).await?)
                    }
                };
            }
            Err(e) => Err(e),
        },
    };
    let reply = match result {
        Ok(()) => EngineReply::Stored,
        Err(e) => {
            // Stop the sender now rather than let it fill our window.
            let _ = recv.stop(0u32.into());
            EngineReply::Error(e.to_string())
        }
    };
    write_frame(send, &reply).await?;
    Ok(())
}

/// Run engine-built code in the engine's shell; output captured.
async fn run(engine: &Engine, script: &str) -> Result<Capture, Refused> {
    let mut shell = engine.shell.lock().await;
    let mut capture = Capture::default();
    let end = shell.run_script(script, None, &mut capture).await;
    engine.pid.store(shell.pid(), Ordering::SeqCst);
    match end?.outcome {
        ExecOutcome::ShellRestarted(why) => Err(Refused::Shell(why)),
        _ => Ok(capture),
    }
}

async fn engine(host: &Host, id: u32) -> Result<Arc<Engine>, Refused> {
    host.engine(id).await.map_err(Refused::NoEngine)
}

async fn set_vars(
    host: &Host,
    id: u32,
    vars: Vec<(String, serde_bytes::ByteBuf)>,
) -> Result<(), Refused> {
    let mut body = String::new();
    for (name, value) in &vars {
        check_name(name)?;
        if value.contains(&0) {
            return Err(DataError::Nul(format!("the value of `{name}`")).into());
        }
        // A value replaces the whole variable, as in IPython: an array or
        // an attribute like `-i` or `-l` (which would change the bytes)
        // goes first; `export` is kept.
        body.push_str(&assignment(
            name,
            &format!(
                "[[ $__pcl_t == *[!x]* ]] && builtin unset -v {name}; {name}={}",
                ansi_c_quote(value)
            ),
        ));
    }
    succeeded(run(&*engine(host, id).await?, &guarded(&body)).await?)
}

/// Shell code that assigns `name` with `code` unless it is readonly
/// (assigning to a readonly variable ends a non-interactive bash): then
/// it says so on stderr and sets the failure flag. `code` finds the
/// variable's attributes in `$__pcl_t`.
fn assignment(name: &str, code: &str) -> String {
    format!(
        "__pcl_t=${{{name}@a}}\n\
         if [[ $__pcl_t == *r* ]]; then builtin printf '%s\\n' '{name}: readonly variable' >&2; __pcl_f=1\n\
         else {code} || __pcl_f=1; [[ $__pcl_t == *x* ]] && builtin export {name}; fi\n"
    )
}

/// `body` run with the user's `set -e` and `set -u` off (restored after),
/// ending with a flag on stdout: `0` when nothing set `__pcl_f`. The flag,
/// not stderr (where a user's `set -x` writes) or a status, tells success.
fn guarded(body: &str) -> String {
    format!(
        "__pcl_o=$-; builtin set +eu; __pcl_f=0\n{body}builtin printf %s \"$__pcl_f\"\n\
         [[ $__pcl_o == *e* ]] && builtin set -e; [[ $__pcl_o == *u* ]] && builtin set -u\n\
         builtin unset -v __pcl_o __pcl_f __pcl_t\n"
    )
}

/// What a script ending in a `0` (success) or `1` flag on stdout says.
fn succeeded(capture: Capture) -> Result<(), Refused> {
    if capture.stdout == b"0" {
        return Ok(());
    }
    let why = String::from_utf8_lossy(&capture.stderr)
        .trim_end()
        .to_string();
    Err(Refused::Shell(if why.is_empty() {
        "the assignment failed".into()
    } else {
        why
    }))
}

async fn get_var(host: &Host, id: u32, name: &str, array: bool) -> Result<Vec<u8>, Refused> {
    check_name(name)?;
    // The first byte says whether the variable exists, so that no command
    // in here ever fails (a user's `set -e` would end the shell).
    let script = if array {
        format!(
            "if builtin declare -p {name} >/dev/null 2>&1; then builtin printf S; \
             (( ${{#{name}[@]}} == 0 )) || builtin printf '%s\\0' \"${{{name}[@]}}\"; \
             else builtin printf U; fi"
        )
    } else {
        format!(
            "if [[ ${{{name}+set}} ]]; then builtin printf 'S%s' \"${name}\"; else builtin printf U; fi"
        )
    };
    let mut capture = run(&*engine(host, id).await?, &script).await?;
    match capture.stdout.first() {
        Some(b'S') => {
            capture.stdout.remove(0);
            Ok(capture.stdout)
        }
        _ => Err(Refused::Unset(name.to_string())),
    }
}

async fn load_array(
    host: &Host,
    id: u32,
    name: &str,
    nul: bool,
    recv: &mut RecvStream,
) -> Result<(), Refused> {
    check_name(name)?;
    let engine = engine(host, id).await?;
    let scratch = scratch_dir().map_err(|source| Refused::Write {
        path: "the engine host's scratch directory".into(),
        source,
    })?;
    let (mut file, temp) = TempFile::create(host, scratch, ".array.pcl")?;
    receive(recv, &mut file, name).await?;
    drop(file);
    let delim = if nul { " -d ''" } else { "" };
    // Whatever it was, the variable becomes a plain array.
    let path = ansi_c_quote(temp.path.as_os_str().as_encoded_bytes());
    let code = format!(
        "[[ $__pcl_t ]] && builtin unset -v {name}; builtin mapfile -t{delim} {name} < {path}"
    );
    let script = guarded(&assignment(name, &code));
    succeeded(run(&engine, &script).await?)
}

/// `path` under the workdir, checked again here: the daemon is trusted,
/// but nothing should depend on that.
async fn remote_path(host: &Host, id: u32, path: &str) -> Result<PathBuf, Refused> {
    engine(host, id).await?;
    let relative = check_remote(path)?;
    Ok(prepare_workdir(host.config.workdir.as_deref())?.join(relative))
}

async fn write_file(
    host: &Host,
    id: u32,
    path: &str,
    recv: &mut RecvStream,
) -> Result<(), Refused> {
    let mut target = Target::open(host, id, path).await?;
    receive(recv, &mut target.file, path).await?;
    target.commit()
}

/// A file being written for a push: a temporary file beside REMOTE, renamed
/// into place by `commit` once its bytes are checked and durable, removed
/// if anything goes wrong before.
pub(super) struct Target {
    pub(super) file: std::fs::File,
    temp: TempFile,
    full: PathBuf,
    path: String,
}

impl Target {
    pub(super) async fn open(host: &Host, id: u32, path: &str) -> Result<Target, Refused> {
        let full = remote_path(host, id, path).await?;
        let write_err = |source| Refused::Write {
            path: path.to_string(),
            source,
        };
        let dir = full.parent().expect("a checked remote path has a parent");
        std::fs::create_dir_all(dir).map_err(write_err)?;
        let name = full
            .file_name()
            .expect("a checked remote path names a file");
        let prefix = format!(".{}.pcl", name.to_string_lossy());
        let (file, temp) = TempFile::create(host, dir, &prefix).map_err(|e| match e {
            Refused::Write { source, .. } => write_err(source),
            other => other,
        })?;
        Ok(Target {
            file,
            temp,
            full,
            path: path.to_string(),
        })
    }

    /// Rename the (synced) temporary file into place.
    pub(super) fn commit(self) -> Result<(), Refused> {
        let Target {
            file,
            mut temp,
            full,
            path,
        } = self;
        drop(file);
        std::fs::rename(&temp.path, &full).map_err(|source| Refused::Write { path, source })?;
        temp.keep = true;
        // The rename itself survives a crash only once the directory is synced.
        let dir = full.parent().expect("a checked remote path has a parent");
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

async fn open_remote(host: &Host, id: u32, path: &str) -> Result<std::fs::File, Refused> {
    let full = remote_path(host, id, path).await?;
    let read_err = |source| Refused::Read {
        path: path.to_string(),
        source,
    };
    let file = std::fs::File::open(&full).map_err(read_err)?;
    if file.metadata().map_err(read_err)?.is_dir() {
        return Err(read_err(std::io::Error::from_raw_os_error(libc::EISDIR)));
    }
    Ok(file)
}

/// Chunks from the daemon into `file` until `End`, whose digest must
/// match; then the data is made durable. Each frame is read into one
/// reused buffer and hashed and written from there.
async fn receive(
    recv: &mut RecvStream,
    file: &mut std::fs::File,
    what: &str,
) -> Result<(), Refused> {
    let write_err = |source| Refused::Write {
        path: what.to_string(),
        source,
    };
    let mut digest = Checksum::new();
    let mut frame = Vec::with_capacity(CHUNK + 16);
    loop {
        let mut len = [0u8; 4];
        if recv.read_exact(&mut len).await.is_err() {
            return Err(Refused::CutOff);
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME {
            return Err(Refused::CutOff);
        }
        frame.resize(len, 0);
        if recv.read_exact(&mut frame).await.is_err() {
            return Err(Refused::CutOff);
        }
        match postcard::from_bytes::<Bulk>(&frame) {
            Ok(Bulk::Chunk(data)) => {
                digest.update(data);
                let start = data.as_ptr() as usize - frame.as_ptr() as usize;
                let chunk = start..start + data.len();
                let mut out = file.try_clone().map_err(write_err)?;
                let buf = std::mem::take(&mut frame);
                let (buf, written) = off_the_runtime(move || {
                    let written = out.write_all(&buf[chunk]);
                    (buf, written)
                })
                .await;
                frame = buf;
                written.map_err(write_err)?;
            }
            Ok(Bulk::End(expected)) => {
                if digest.digest() != expected {
                    return Err(Refused::Checksum(what.to_string()));
                }
                let out = file.try_clone().map_err(write_err)?;
                return off_the_runtime(move || out.sync_all())
                    .await
                    .map_err(write_err);
            }
            Err(_) => return Err(Refused::CutOff),
        }
    }
}

/// Everything `source` holds as `Data` chunks, then `DataEnd`. The outer
/// error is the stream's, the inner one the source's (already reported
/// to the daemon's side by the caller).
async fn send_bytes(
    send: &mut SendStream,
    mut source: impl Read + Send + 'static,
) -> Result<Result<(), std::io::Error>, EngineError> {
    let mut digest = Checksum::new();
    loop {
        let (back, mut buf, n) = off_the_runtime(move || {
            let mut buf = vec![0u8; CHUNK];
            let n = read_full(&mut source, &mut buf);
            (source, buf, n)
        })
        .await;
        source = back;
        let n = match n {
            Ok(n) => n,
            Err(e) => return Ok(Err(e)),
        };
        if n == 0 {
            break;
        }
        buf.truncate(n);
        digest.update(&buf);
        write_frame(send, &EngineReply::Data(buf)).await?;
    }
    write_frame(send, &EngineReply::DataEnd(digest.digest())).await?;
    Ok(Ok(()))
}

/// A temporary file removed on drop unless kept: whatever goes wrong, no
/// half file is left behind. The guard knows of it while it exists, so
/// not even a SIGKILL of the engine host leaves it behind.
struct TempFile {
    path: PathBuf,
    keep: bool,
    guard: Option<Arc<Guard>>,
}

impl TempFile {
    fn create(host: &Host, dir: &Path, prefix: &str) -> Result<(std::fs::File, TempFile), Refused> {
        use ring::rand::{SecureRandom, SystemRandom};
        let mut bytes = [0u8; 8];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system random source works");
        let path = dir.join(format!("{prefix}-{}.tmp", hex::encode(bytes)));
        let temp = TempFile {
            path,
            keep: false,
            guard: host.guard.clone(),
        };
        if let Some(guard) = &temp.guard {
            guard.temp(&temp.path);
        }
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp.path);
        match opened {
            Ok(file) => Ok((file, temp)),
            Err(source) => {
                // Whatever is at that path is not ours to remove.
                let mut temp = temp;
                temp.keep = true;
                Err(Refused::Write {
                    path: temp.path.display().to_string(),
                    source,
                })
            }
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
        if let Some(guard) = &self.guard {
            guard.done(&self.path);
        }
    }
}
