//! Where a map's item goes in its command: GNU parallel's `{}`, quoted so
//! that no item is ever run as code. The daemon (for joblogs) and the
//! engine host (to run the task) share this one rule.

use super::ansi_c_quote;

/// The command for one item: every `{}` becomes the shell-quoted item; with
/// no `{}`, the quoted item is appended after a space (GNU parallel's rule).
/// Like parallel, an item that needs no quoting is left bare, so it also
/// works where quotes mean something else (`$(( {} * 2 ))`).
///
/// A `{}` inside `"..."`, `'...'` or `$'...'` (GNU parallel users quote it
/// out of habit) gets that quote closed around the quoted item, so it still
/// stands for the item's exact bytes. Where bash would decode `$'...'` and
/// then expand the result again (arithmetic, `${...}`, array subscripts),
/// a quoted item goes in double-quoted, as text no expansion touches. The
/// scan knows quotes, backslashes, `$(...)`, `$((...))`, `((...))`,
/// `${...}`, subscripts, backticks and comments, not all of bash
/// (here-documents, `case` patterns): where it misjudges, the item comes
/// out garbled, never run, because the item's bytes go in only as `\xHH`
/// escapes or as the bare set.
pub(crate) fn substitute(template: &str, item: &[u8]) -> String {
    #[derive(Clone, Copy, PartialEq)]
    enum Quoting {
        /// Shell code: the top level, or `$(...)` with its open parens.
        Code(u32),
        Backtick,
        Comment,
        Double,
        Single,
        AnsiC,
        /// `$((...))` or `((...))`, with its open parens.
        Arith(u32),
        /// `${...}`, with its open braces.
        Param(u32),
        /// `name[...]` or `$[...]`, with its open brackets.
        Subscript(u32),
    }
    use Quoting::*;
    let bare = !item.is_empty()
        && item
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"_-.,/:+@%".contains(&b));
    let quoted = if bare {
        String::from_utf8_lossy(item).into_owned()
    } else {
        ansi_c_quote(item)
    };
    if !template.contains("{}") {
        return format!("{template} {quoted}");
    }
    let mut stack = vec![Code(0)];
    let mut out = String::with_capacity(template.len() + quoted.len());
    // The previous character was a backslash that escapes this one.
    let mut escaped = false;
    let mut word_start = true;
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        let here = *stack.last().expect("the top level is never popped");
        if let Some(after) = rest.strip_prefix("{}") {
            // Whether bash expands again what `$'...'` decodes to here.
            let reexpanded = stack
                .iter()
                .rev()
                .take_while(|q| !matches!(q, Code(_) | Backtick))
                .any(|q| matches!(q, Arith(_) | Param(_) | Subscript(_)));
            let inserted = match here {
                _ if bare => quoted.clone(),
                Code(_) | Backtick | Comment => quoted.clone(),
                Double if reexpanded => quoted.clone(),
                Double => format!("\"{quoted}\""),
                Single if reexpanded => format!("'\"{quoted}\"'"),
                Single => format!("'{quoted}'"),
                AnsiC if reexpanded => format!("'\"{quoted}\"$'"),
                AnsiC => format!("'{quoted}$'"),
                Arith(_) | Param(_) | Subscript(_) => format!("\"{quoted}\""),
            };
            // `"\{}"` means a backslash, then the item: doubled, the
            // backslash cannot escape the quote that closes the string.
            if escaped && inserted.starts_with(['"', '\'']) {
                out.push('\\');
            }
            out.push_str(&inserted);
            (rest, escaped, word_start) = (after, false, false);
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
        if std::mem::take(&mut escaped) {
            word_start = false;
            continue;
        }
        // Characters that open something are taken along with `c`.
        let mut take = |opener: &str, into: Quoting, stack: &mut Vec<Quoting>| -> bool {
            match rest.strip_prefix(opener) {
                Some(after) => {
                    out.push_str(opener);
                    rest = after;
                    stack.push(into);
                    true
                }
                None => false,
            }
        };
        let opens_code = !matches!(here, Single | AnsiC | Comment);
        let opened = opens_code
            && match c {
                '$' => {
                    take("((", Arith(0), &mut stack)
                        || take("(", Code(0), &mut stack)
                        || take("{", Param(0), &mut stack)
                        || take("[", Subscript(0), &mut stack)
                        || (here != Double && take("'", AnsiC, &mut stack))
                }
                '(' if word_start && matches!(here, Code(_)) => take("(", Arith(0), &mut stack),
                _ => false,
            };
        if !opened {
            let nested = stack.len() > 1;
            let top = stack.last_mut().expect("the top level is never popped");
            match (here, c) {
                (Single, '\'') | (AnsiC, '\'') | (Double, '"') | (Comment, '\n') => {
                    stack.pop();
                }
                (Single | Comment, _) => {}
                (_, '\\') => escaped = true,
                (AnsiC, _) => {}
                (Backtick, '`') => {
                    stack.pop();
                }
                (_, '`') => stack.push(Backtick),
                (Double, _) => {}
                (_, '\'') => stack.push(Single),
                (_, '"') => stack.push(Double),
                (Code(_) | Backtick, '#') if word_start => stack.push(Comment),
                (Code(_), '[')
                    if out[..out.len() - 1]
                        .ends_with(|p: char| p.is_ascii_alphanumeric() || p == '_') =>
                {
                    stack.push(Subscript(0))
                }
                (Code(n), '(') => *top = Code(n + 1),
                (Code(0), ')') if nested => {
                    stack.pop();
                }
                (Code(n), ')') => *top = Code(n.saturating_sub(1)),
                (Arith(n), '(') => *top = Arith(n + 1),
                (Arith(0), ')') => {
                    // The first of the two that close it.
                    stack.pop();
                    if let Some(after) = rest.strip_prefix(')') {
                        out.push(')');
                        rest = after;
                    }
                }
                (Arith(n), ')') => *top = Arith(n - 1),
                (Param(n), '{') => *top = Param(n + 1),
                (Param(0), '}') | (Subscript(0), ']') => {
                    stack.pop();
                }
                (Param(n), '}') => *top = Param(n - 1),
                (Subscript(n), '[') => *top = Subscript(n + 1),
                (Subscript(n), ']') => *top = Subscript(n - 1),
                _ => {}
            }
        }
        word_start = c.is_whitespace() || ";&|()<>".contains(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::substitute;

    #[test]
    fn braces_become_the_quoted_item() {
        assert_eq!(substitute("echo {} {}", b"a b"), "echo $'a b' $'a b'");
        assert_eq!(substitute("echo", b"x"), "echo x");
        assert_eq!(
            substitute("echo $(( {} * 2 ))", b"21"),
            "echo $(( 21 * 2 ))"
        );
        assert_eq!(substitute("echo {}", b""), "echo $''");
        assert_eq!(substitute("echo {}", b"*"), "echo $'\\x2a'");
        assert_eq!(
            substitute("echo {}", b"$(touch x)'\""),
            "echo $'\\x24\\x28touch x\\x29\\x27\\x22'"
        );
    }

    #[test]
    fn a_quoted_placeholder_has_its_quote_closed_around_the_item() {
        let item = b"$(touch x)";
        let q = "$'\\x24\\x28touch x\\x29'";
        let cases = [
            ("echo \"{}\"", format!("echo \"\"{q}\"\"")),
            ("echo '{}'", format!("echo ''{q}''")),
            ("echo $'{}'", format!("echo $''{q}$''")),
            ("echo \"a{}b\" {}", format!("echo \"a\"{q}\"b\" {q}")),
            ("echo \"$(f {})\"", format!("echo \"$(f {q})\"")),
            ("echo \"`f {}`\"", format!("echo \"`f {q}`\"")),
            ("echo \"\\{}\"", format!("echo \"\\\\\"{q}\"\"")),
            ("echo {} # it's \"{}\"", format!("echo {q} # it's \"{q}\"")),
        ];
        for (template, want) in cases {
            assert_eq!(substitute(template, item), want, "{template}");
        }
        // A bare item needs no closing of anything.
        assert_eq!(substitute("echo \"{}\" '{}'", b"a1"), "echo \"a1\" 'a1'");
    }

    /// What bash makes of `template` with `item` substituted, run in `dir`.
    fn bash(dir: &std::path::Path, template: &str, item: &[u8]) -> Vec<u8> {
        std::process::Command::new("bash")
            .args(["--noprofile", "--norc", "-c", &substitute(template, item)])
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .output()
            .expect("bash runs")
            .stdout
    }

    const HOSTILE: &[u8] = b"$(touch a) `touch b`;touch c' \"$(touch d)\"\\\n*x";

    #[test]
    fn every_handled_quoting_gives_the_exact_bytes() {
        let dir = tempfile::tempdir().unwrap();
        for template in [
            "printf %s {}",
            "printf %s \"{}\"",
            "printf %s '{}'",
            "printf %s $'{}'",
            "printf %s \"$(printf %s \"{}\")\"",
            "printf %s \"$(printf %s '{}')\"",
            "printf %s \"`printf %s {}`\"",
            "printf %s {} # it's \"{}\"",
        ] {
            for item in [HOSTILE, b"", b"plain-1.0"] {
                assert_eq!(bash(dir.path(), template, item), item, "{template}");
            }
        }
        assert_eq!(bash(dir.path(), "printf %s \"<{}>\"", b"a b"), b"<a b>");
        assert_eq!(bash(dir.path(), "printf %s \"\\{}\"", b"a b"), b"\\a b");
        assert_eq!(bash(dir.path(), "printf %s $'\\{}'", b"a b"), b"\\a b");
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }

    #[test]
    fn where_bash_expands_twice_the_item_goes_in_double_quoted() {
        let q = "$'\\x2a'";
        let cases = [
            ("echo $(( {} ))", format!("echo $(( \"{q}\" ))")),
            ("(( x = {} ))", format!("(( x = \"{q}\" ))")),
            (
                "echo ${a[{}]} ${#a[@]}",
                format!("echo ${{a[\"{q}\"]}} ${{#a[@]}}"),
            ),
            ("a[{}]=1", format!("a[\"{q}\"]=1")),
            (
                "echo \"$(( '{}' ))\"",
                format!("echo \"$(( ''\"{q}\"'' ))\""),
            ),
            ("echo $(( \"{}\" )) {}", format!("echo $(( \"{q}\" )) {q}")),
        ];
        for (template, want) in cases {
            assert_eq!(substitute(template, b"*"), want, "{template}");
        }
        assert_eq!(
            substitute("echo $(( {} * 2 ))", b"21"),
            "echo $(( 21 * 2 ))"
        );
    }

    #[test]
    fn no_quoting_lets_an_item_run() {
        let dir = tempfile::tempdir().unwrap();
        for template in [
            "echo {} \"{}\" '{}' $'{}' \"a{}b\"",
            "cat <<EOF\n{}\nEOF",
            "cat <<'EOF'\n\"{}\"\nEOF",
            "echo ${x:-{}} \"${x:-{}}\" \"${x:-'{}'}\" ${x:-\"{}\"}",
            "x=1; echo ${x:0:{}} ${x:{}} \"${x:0:{}}\" ${x:0:'{}'}",
            "echo ${a[{}]} \"${a[{}]}\" ${a['{}']} ${a[\"{}\"]} ${a[$'{}']}",
            "a[{}]=1; a[\"{}\"]=1; a['{}']=1; a[$'{}']=1",
            "echo $(case a in a) echo \"{}\";; esac)",
            "echo \\{} \"\\\\{}\" '\\{}' $'\\'{} $'\\{}' \"\\{}\"",
            "echo $(( {} )) \"$(( {} ))\" $(( \"{}\" )) $(( '{}' )) $(( $'{}' ))",
            "echo \"$(( \"{}\" ))\" \"$(( '{}' ))\" \"$(( $'{}' ))\" $(( \\{} ))",
            "(( {} )); (( \"{}\" )); (( '{}' )); (( $'{}' )); echo $[ {} ]",
            "echo $(( 1 + $(echo {}) )) $(( a[{}] ))",
            "echo \"$(echo \")\" {}\"",
            "echo '{}\" {} \"{}'",
            "f() { echo \"{}\"; }; f",
            "echo \"`echo \\\"{}\\\"`\"",
            "echo {} # it's {}\necho \"{}\"",
        ] {
            bash(dir.path(), template, HOSTILE);
            let made: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
            assert!(made.is_empty(), "{template}: the item ran: {made:?}");
        }
    }
}
