//! The response header fields that only the node knows.

use raft::{NodeId, Term};
use raft_proto::etcd::etcdserverpb::{response_op, ResponseHeader, TxnResponse};

/// What the node adds to every header the store produced: the store sets
/// `revision`, and knows nothing of clusters, members or terms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderFields {
    /// The cluster's id.
    pub cluster_id: u64,
    /// The answering member's id.
    pub member_id: NodeId,
    /// The Raft term the answering member is in.
    pub raft_term: Term,
}

impl HeaderFields {
    /// Fills one header, keeping its revision (and creating it if absent).
    pub fn fill(&self, header: &mut Option<ResponseHeader>) {
        let header = header.get_or_insert_with(ResponseHeader::default);
        header.cluster_id = self.cluster_id;
        header.member_id = self.member_id.get();
        header.raft_term = self.raft_term.get();
    }

    /// Fills a transaction's header and those of all its nested responses.
    pub fn fill_txn(&self, response: &mut TxnResponse) {
        self.fill(&mut response.header);
        for operation in &mut response.responses {
            match &mut operation.response {
                Some(response_op::Response::ResponseRange(inner)) => self.fill(&mut inner.header),
                Some(response_op::Response::ResponsePut(inner)) => self.fill(&mut inner.header),
                Some(response_op::Response::ResponseDeleteRange(inner)) => {
                    self.fill(&mut inner.header)
                }
                Some(response_op::Response::ResponseTxn(inner)) => self.fill_txn(inner),
                None => {}
            }
        }
    }
}
