//! The cluster file's `setup`, as the engines run it. Run as it is, bash
//! numbers its lines after pcl's own wrapper lines (`bash: line 7: ...`
//! for the user's second line); sourced from a pipe of its own, bash counts
//! the user's lines from 1, and the error can name the user's line.

/// What an engine's shell runs for `setup`. Only bash is sure to have
/// `source` and `<(...)`; another shell gets the text as it is.
pub(super) fn script(setup: &str, shell: &str) -> String {
    if shell.rsplit('/').next() != Some("bash") {
        return setup.to_string();
    }
    let quoted = setup.replace('\'', r"'\''");
    format!("builtin source <(builtin printf '%s' '{quoted}')")
}

/// An engine's start failure, with bash's `/dev/fd/63: line N: ` (the
/// pipe the setup was sourced from) turned into the user's line and text.
pub(super) fn explain(reason: &str, setup: Option<&str>) -> String {
    let Some(setup) = setup else {
        return reason.to_string();
    };
    let lines: Vec<&str> = setup.lines().collect();
    let mut out = String::with_capacity(reason.len());
    let mut rest = reason;
    while let Some(at) = rest.find("/dev/fd/") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "/dev/fd/".len()..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let tail = &after[digits..];
        let number = tail
            .strip_prefix(": line ")
            .and_then(|t| t.split_once(": "))
            .and_then(|(n, t)| Some((n.parse::<usize>().ok()?, t)));
        match number {
            Some((n, text)) if digits > 0 && (1..=lines.len()).contains(&n) => {
                out.push_str(&format!("setup line {n} ({}): ", lines[n - 1].trim()));
                rest = text;
            }
            _ => {
                out.push_str("/dev/fd/");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bash_sources_the_setup_and_other_shells_get_it_as_is() {
        assert_eq!(
            script("echo 'a'", "/bin/bash"),
            r"builtin source <(builtin printf '%s' 'echo '\''a'\''')"
        );
        assert_eq!(script("echo 'a'", "zsh"), "echo 'a'");
    }

    #[test]
    fn errors_name_the_users_line() {
        let setup = "true\n  source ~/venv/bin/activate\n";
        let reason = "setup failed with status 1: /dev/fd/63: line 2: \
                      /home/a/venv/bin/activate: No such file or directory";
        assert_eq!(
            explain(reason, Some(setup)),
            "setup failed with status 1: setup line 2 (source ~/venv/bin/activate): \
             /home/a/venv/bin/activate: No such file or directory"
        );
        // Not the setup's pipe, or a line it does not have: left alone.
        let other = "x: /dev/fd/3 is closed; /dev/fd/63: line 9: y";
        assert_eq!(explain(other, Some(setup)), other);
        assert_eq!(explain(reason, None), reason);
    }

    /// The script, run by a real bash, fails with the user's line number.
    #[test]
    fn a_real_bash_counts_the_users_lines() {
        let setup = "x=1\nnot-a-command-pcl\n";
        let out = std::process::Command::new("bash")
            .args(["--noprofile", "--norc", "-c"])
            .arg(format!("true\ntrue\n{}", script(setup, "bash")))
            .output()
            .expect("bash runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let explained = explain(&stderr, Some(setup));
        assert!(
            explained.starts_with("setup line 2 (not-a-command-pcl): "),
            "{explained}"
        );
    }
}
