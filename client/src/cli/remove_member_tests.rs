//! `members remove` against a fake Cluster service that answers as a
//! leader removing itself does: the first attempt ends unavailable (it may
//! or may not have been applied), and the retry finds the member gone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use raft_proto::etcd::etcdserverpb::cluster_server::{Cluster, ClusterServer};
use raft_proto::etcd::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use super::{remove_member, Endpoints};

/// Answers `member_remove` with the statuses in `answers`, in turn (the
/// last one again once they run out), and lists member 1 alone.
struct Scripted {
    answers: Vec<Status>,
    calls: Arc<AtomicUsize>,
}

fn refused() -> Status {
    Status::unimplemented("not part of this script")
}

#[tonic::async_trait]
impl Cluster for Scripted {
    async fn member_add(
        &self,
        _: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Err(refused())
    }

    async fn member_remove(
        &self,
        _: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let answer = &self.answers[call.min(self.answers.len() - 1)];
        Err(Status::new(answer.code(), answer.message()))
    }

    async fn member_update(
        &self,
        _: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(refused())
    }

    async fn member_list(
        &self,
        _: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let member = Member {
            id: 1,
            name: "1".into(),
            peer_ur_ls: vec!["http://127.0.0.1:2380".into()],
            ..Default::default()
        };
        Ok(Response::new(MemberListResponse {
            members: vec![member],
            ..Default::default()
        }))
    }

    async fn member_promote(
        &self,
        _: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(refused())
    }
}

/// Serves `answers` on a free port; returns its endpoints and the count of
/// `member_remove` calls.
async fn serve(answers: Vec<Status>) -> (Endpoints, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let address = listener.local_addr().expect("its address");
    let calls = Arc::new(AtomicUsize::new(0));
    let service = Scripted {
        answers,
        calls: calls.clone(),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ClusterServer::new(service))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (Endpoints::plain(vec![format!("http://{address}")]), calls)
}

fn not_a_member() -> Status {
    Status::not_found("etcdserver: member not found: the configuration change was refused: node 5 is not a member")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_that_may_have_been_applied_and_then_finds_the_member_gone_is_done() {
    let leader_changed =
        Status::unavailable("leader changed; the request may or may not have been applied");
    let (endpoints, calls) = serve(vec![leader_changed, not_a_member()]).await;
    let output = remove_member(&endpoints, 5).await.expect("removed");
    assert!(output.starts_with("removed member 5\n1 1 "), "{output}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_member_that_never_was_is_refused_as_etcd_refuses_it() {
    let (endpoints, calls) = serve(vec![not_a_member()]).await;
    let status = remove_member(&endpoints, 5).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert!(status.message().contains("member not found"), "{status:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
