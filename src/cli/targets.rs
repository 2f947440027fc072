//! The `-t`/`--targets` argument, as the command line checks it.

/// `-t`/`--targets`, checked before anything is sent. An empty list is a
/// usage error, never `all`: an unset variable in a script (`-t "$NODES"`)
/// must not widen a command to the whole cluster, and pdsh and clush
/// refuse an empty host list too.
pub(super) fn targets_arg(targets: &str) -> Result<String, String> {
    let trimmed = targets.trim();
    if trimmed.is_empty() {
        return Err(
            "the target list is empty; give `all`, engine ids like `0,2,5-7`, or hosts like `node[01-04]`"
                .into(),
        );
    }
    if trimmed != "all" && trimmed.split(',').any(|part| part.trim() == "all") {
        return Err("`all` stands alone: give `all`, or ids and hosts without it".into());
    }
    Ok(targets.to_string())
}
