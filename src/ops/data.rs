//! Routing of the data verbs (push, pull, scatter, gather) to their files.

use std::sync::Arc;

use super::{After, gather, pull, push, scatter};
use crate::protocol::data::DataRequest;
use crate::session::{EnginePool, ReplySink, SessionError};

pub(super) async fn run(
    pool: &Arc<EnginePool>,
    request: DataRequest,
    out: &mut ReplySink,
) -> Result<After, SessionError> {
    match request {
        DataRequest::PushVars { targets, vars } => push::vars(pool, &targets, vars, out).await?,
        DataRequest::PushFile {
            targets,
            from,
            remote,
        } => push::file(pool, &targets, from, &remote, out).await?,
        DataRequest::PullVars {
            targets,
            names,
            single,
        } => pull::vars(pool, &targets, names, single, out).await?,
        DataRequest::PullFile {
            targets,
            remote,
            dest,
        } => pull::file(pool, &targets, &remote, &dest, out).await?,
        DataRequest::ScatterVar {
            targets,
            name,
            items,
        } => scatter::var(pool, &targets, &name, items, out).await?,
        DataRequest::ScatterFile {
            targets,
            remote,
            from,
        } => scatter::file(pool, &targets, &remote, from, out).await?,
        DataRequest::GatherVar { targets, name } => gather::var(pool, &targets, &name, out).await?,
        DataRequest::GatherFile { targets, remote } => {
            gather::file(pool, &targets, &remote, out).await?
        }
    }
    Ok(After::Continue)
}
