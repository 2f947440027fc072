//! Reading a node set string into its parts, as ClusterShell's parsing
//! engine does: names and bracketed ranges joined by `,` (union), `!`
//! (difference), `&` (intersection) and `^` (symmetric difference),
//! evaluated left to right.

use super::index::{Index, is_py_space, py_int};
use super::rangeset::RangeSet;
use super::{NodeSetError, Op};

fn bad(part: &str, why: &str) -> NodeSetError {
    NodeSetError::Parse {
        part: part.replace("%%", "%"),
        why: why.to_owned(),
    }
}

/// One operand: the operator before it, its pattern (the name with `%s`
/// for each number and `%` written `%%`) and one index set per number.
pub(super) struct Part {
    pub(super) op: Op,
    pub(super) pattern: String,
    pub(super) ranges: Vec<RangeSet>,
}

/// The first operator in `s` and where it is.
fn next_op(s: &str) -> Option<(usize, Op)> {
    s.char_indices()
        .find_map(|(i, c)| Some((i, Op::from_char(c)?)))
}

/// Whether a bracket comes before the next operator.
fn bracket_first(bracket: Option<usize>, op: Option<(usize, Op)>) -> bool {
    match (bracket, op) {
        (Some(b), Some((o, _))) => o > b,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Splits an escaped node set string into its operands.
pub(super) fn scan(mut rest: &str) -> Result<Vec<Part>, NodeSetError> {
    let mut parts = Vec::new();
    let mut op = Op::Union;
    while !rest.is_empty() {
        rest = rest.trim_start_matches(is_py_space);
        let this_op = op;
        let mut ranges = Vec::new();
        let mut next = next_op(rest);
        let mut bracket = rest.find('[');
        let pattern;
        if bracket_first(bracket, next) {
            let whole = rest;
            let mut pat = String::new();
            let mut sfx = rest;
            while bracket_first(bracket, next) {
                let (pfx, after) = sfx.split_once('[').expect("a bracket was found");
                let (rng, after) = after
                    .split_once(']')
                    .ok_or_else(|| bad(whole, "missing bracket"))?;
                sfx = after;
                if pfx.contains(']') {
                    return Err(bad(pfx, "illegal closing bracket"));
                }
                if let Some(close) = sfx.find(']') {
                    if sfx.find('[').is_none_or(|open| close < open) {
                        return Err(bad(sfx, "illegal closing bracket"));
                    }
                }
                let mut rng = rng.to_owned();
                if !sfx.is_empty() {
                    (sfx, rng) = amend_trailing_digits(sfx, &rng)?;
                }
                let mut pfx_pattern = String::new();
                if !pfx.is_empty() {
                    let (rest_pfx, amended) = amend_leading_digits(pfx, &rng)?;
                    rng = amended;
                    if !rest_pfx.is_empty() {
                        let (p, r) = scan_single(rest_pfx)?;
                        pfx_pattern = p;
                        ranges.extend(r);
                    }
                }
                bracket = sfx.find('[');
                next = next_op(sfx);
                if sfx.starts_with('[') {
                    return Err(bad(sfx, "illegal reopening bracket"));
                }
                pat.push_str(&pfx_pattern);
                pat.push_str("%s");
                ranges.push(RangeSet::parse(&rng)?);
            }
            match next_op(sfx) {
                None => rest = "",
                Some((at, found)) => {
                    (sfx, rest) = (&sfx[..at], &sfx[at + 1..]);
                    if rest.is_empty() {
                        return Err(missing_operand(found));
                    }
                    op = found;
                }
            }
            let sfx = sfx.trim_end_matches(is_py_space);
            if !sfx.is_empty() {
                let (p, r) = scan_single(sfx)?;
                pat.push_str(&p);
                ranges.extend(r);
            }
            pattern = pat;
        } else {
            let node;
            match next {
                None => (node, rest) = (rest, ""),
                Some((at, found)) => {
                    (node, rest) = (&rest[..at], &rest[at + 1..]);
                    if node.is_empty() || rest.is_empty() {
                        return Err(missing_operand(found));
                    }
                    op = found;
                }
            }
            if node.contains(']') {
                return Err(bad(node, "illegal closing bracket"));
            }
            let (p, r) = scan_single(node.trim_end_matches(is_py_space))?;
            pattern = p;
            ranges = r;
        }
        parts.push(Part {
            op: this_op,
            pattern,
            ranges,
        });
    }
    Ok(parts)
}

fn missing_operand(op: Op) -> NodeSetError {
    NodeSetError::Parse {
        part: op.as_char().to_string(),
        why: "missing nodeset operand".to_owned(),
    }
}

/// One name without brackets: each run of digits is a number.
pub(super) fn scan_single(name: &str) -> Result<(String, Vec<RangeSet>), NodeSetError> {
    if name.is_empty() {
        return Err(bad(name, "parse error"));
    }
    let mut pattern = String::new();
    let mut ranges = Vec::new();
    let mut rest = name;
    while !rest.is_empty() {
        let text_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        pattern.push_str(&rest[..text_end]);
        rest = &rest[text_end..];
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits_end > 0 {
            let digits = &rest[..digits_end];
            let value = py_int(digits).ok_or_else(|| bad(digits, "invalid rangeset index"))?;
            let pad = if digits.len() > 1 && digits.starts_with('0') {
                digits.len()
            } else {
                0
            };
            pattern.push_str("%s");
            ranges.push(RangeSet::one(Index::new(value, pad)));
            rest = &rest[digits_end..];
        }
    }
    Ok((pattern, ranges))
}

/// `node1[0-10]` means `node[10-110]`: digits just before a bracket join
/// each bound of its ranges.
fn amend_leading_digits<'a>(
    outer: &'a str,
    inner: &str,
) -> Result<(&'a str, String), NodeSetError> {
    let kept = outer.trim_end_matches(|c: char| c.is_ascii_digit());
    if kept.len() == outer.len() {
        return Ok((outer, inner.to_owned()));
    }
    let digits = &outer[kept.len()..];
    let runs: Vec<String> = RangeSet::parse(inner)?
        .runs()
        .into_iter()
        .map(|(start, last)| {
            let run = if start == last {
                start.to_string()
            } else {
                format!("{start}-{last}")
            };
            run.split('-')
                .map(|bound| format!("{digits}{bound}"))
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect();
    Ok((kept, runs.join(",")))
}

/// `node[1-3]0` means `node[10-30/10]`: digits just after a bracket join
/// each bound, and a range steps over the numbers they add.
fn amend_trailing_digits<'a>(
    outer: &'a str,
    inner: &str,
) -> Result<(&'a str, String), NodeSetError> {
    let kept = outer.trim_start_matches(|c: char| c.is_ascii_digit());
    if kept.len() == outer.len() {
        return Ok((outer, inner.to_owned()));
    }
    if inner.contains('/') {
        return Err(bad(outer, "illegal trailing digits after range with steps"));
    }
    let digits = &outer[..outer.len() - kept.len()];
    let parts: Vec<String> = inner
        .split(',')
        .map(|elem| {
            let shifted = elem
                .split('-')
                .map(|bound| format!("{bound}{digits}"))
                .collect::<Vec<_>>()
                .join("-");
            if shifted.contains('-') {
                format!("{shifted}/1{}", "0".repeat(digits.len()))
            } else {
                shifted
            }
        })
        .collect();
    Ok((kept, parts.join(",")))
}
