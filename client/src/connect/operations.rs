//! Operations on a cluster as its client: each tries the endpoints in turn,
//! retrying while the cluster has no leader (and, for membership changes,
//! while the previous change is still in progress), and returns what the
//! cluster answered. The command line (`crate::cli::commands`) prints these
//! answers; the harnesses in `sim/` act on them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use raft_proto::etcd::etcdserverpb::{
    Member, MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest,
    MemberUpdateRequest, MoveLeaderRequest,
};
use tonic::{Code, Status};

use crate::connect::endpoints::{Clients, Endpoints};

/// How long an operation keeps retrying an unavailable cluster.
const RETRY_FOR: Duration = Duration::from_secs(10);

/// Runs `call` against each endpoint in turn until one succeeds, retrying
/// `Unavailable` answers until [`RETRY_FOR`] has passed.
pub async fn with_any<T, F, Fut>(endpoints: &Endpoints, mut call: F) -> Result<T, Status>
where
    F: FnMut(Clients) -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let deadline = tokio::time::Instant::now() + RETRY_FOR;
    let mut last = Status::unavailable("no endpoint was tried");
    loop {
        for endpoint in &endpoints.urls {
            match call(endpoints.clients(endpoint)).await {
                Ok(value) => return Ok(value),
                Err(status) if status.code() == Code::Unavailable => last = status,
                Err(status) => return Err(status),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Retries `call` while the cluster answers that the previous change is
/// still in progress or a new leader is not ready yet (both pass within a
/// few heartbeats), for at most [`RETRY_FOR`].
async fn with_change_retries<T, F, Fut>(endpoints: &Endpoints, mut call: F) -> Result<T, Status>
where
    F: FnMut(Clients) -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let deadline = tokio::time::Instant::now() + RETRY_FOR;
    loop {
        match with_any(endpoints, &mut call).await {
            Err(status)
                if status.code() == Code::FailedPrecondition
                    && status.message().contains("retry")
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// Adds member `id` at peer `address` (host:port), as a learner or a voter.
/// Returns the members after the change.
pub async fn add_member(
    endpoints: &Endpoints,
    id: u64,
    address: &str,
    learner: bool,
) -> Result<Vec<Member>, Status> {
    let request = MemberAddRequest {
        peer_ur_ls: vec![format!("{}://{address}", endpoints.member_scheme())],
        is_learner: learner,
    };
    let response = with_change_retries(endpoints, |mut clients| {
        let mut request = tonic::Request::new(request.clone());
        request.metadata_mut().insert(
            crate::server::cluster_service::MEMBER_ID_METADATA,
            id.to_string().parse().expect("digits are valid metadata"),
        );
        async move { clients.cluster.member_add(request).await }
    })
    .await?;
    Ok(response.into_inner().members)
}

/// Removes member `id`. Returns the members after the change.
///
/// An attempt that ends unavailable (a leader that removed itself answers
/// "leader changed; the request may or may not have been applied") is
/// retried; when the retry finds the member gone, the earlier attempt
/// removed it, and that is reported as done.
pub async fn remove_member(endpoints: &Endpoints, id: u64) -> Result<Vec<Member>, Status> {
    let indeterminate = AtomicBool::new(false);
    let removed = with_change_retries(endpoints, |mut clients| {
        let indeterminate = &indeterminate;
        async move {
            let answer = clients
                .cluster
                .member_remove(MemberRemoveRequest { id })
                .await;
            if answer
                .as_ref()
                .is_err_and(|status| status.code() == Code::Unavailable)
            {
                indeterminate.store(true, Ordering::Relaxed);
            }
            answer
        }
    })
    .await;
    match removed {
        Ok(response) => Ok(response.into_inner().members),
        Err(status) if status.code() == Code::NotFound && indeterminate.load(Ordering::Relaxed) => {
            list_members(endpoints, true).await
        }
        Err(status) => Err(status),
    }
}

/// Promotes learner `id` to voter. Returns the members after the change.
pub async fn promote_member(endpoints: &Endpoints, id: u64) -> Result<Vec<Member>, Status> {
    let response = with_change_retries(endpoints, |mut clients| async move {
        clients
            .cluster
            .member_promote(MemberPromoteRequest { id })
            .await
    })
    .await?;
    Ok(response.into_inner().members)
}

/// Moves member `id` to peer `address` (host:port). Returns the members
/// after the change.
pub async fn update_member(
    endpoints: &Endpoints,
    id: u64,
    address: &str,
) -> Result<Vec<Member>, Status> {
    let request = MemberUpdateRequest {
        id,
        peer_ur_ls: vec![format!("{}://{address}", endpoints.member_scheme())],
    };
    let response = with_change_retries(endpoints, |mut clients| {
        let request = request.clone();
        async move { clients.cluster.member_update(request).await }
    })
    .await?;
    Ok(response.into_inner().members)
}

/// The members, read through the log when `linearizable`.
pub async fn list_members(
    endpoints: &Endpoints,
    linearizable: bool,
) -> Result<Vec<Member>, Status> {
    let response = with_any(endpoints, |mut clients| async move {
        clients
            .cluster
            .member_list(MemberListRequest { linearizable })
            .await
    })
    .await?;
    Ok(response.into_inner().members)
}

/// Hands leadership to member `target` (any endpoint forwards the request
/// to the leader). Returns the term of the answer.
pub async fn transfer_leader(endpoints: &Endpoints, target: u64) -> Result<u64, Status> {
    let response = with_any(endpoints, |mut clients| async move {
        clients
            .maintenance
            .move_leader(MoveLeaderRequest { target_id: target })
            .await
    })
    .await?;
    Ok(response
        .into_inner()
        .header
        .map_or(0, |header| header.raft_term))
}
