//! The request handler: cluster names from the [`DnsIndex`], everything else through a hickory
//! forwarder to the node's resolvers.

use std::sync::{Arc, RwLock};

use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::{Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{Catalog, MessageResponseBuilder};

use super::records::{Answer, DnsIndex};

/// The index answers are read from; replaced as a whole when the cluster changes.
pub type SharedIndex = Arc<RwLock<Arc<DnsIndex>>>;

/// Answers cluster names and forwards the rest.
pub struct ClusterDnsHandler {
    index: SharedIndex,
    forward: Option<Catalog>,
}

impl std::fmt::Debug for ClusterDnsHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterDnsHandler")
            .field("forwards", &self.forward.is_some())
            .finish_non_exhaustive()
    }
}

impl ClusterDnsHandler {
    /// A handler reading `index`, forwarding through `forward` (a catalog holding a forwarder for the
    /// root zone; `None`: names outside the cluster are refused).
    pub fn new(index: SharedIndex, forward: Option<Catalog>) -> Self {
        Self { index, forward }
    }

    fn current(&self) -> Arc<DnsIndex> {
        match self.index.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

fn failed(request: &Request, code: ResponseCode) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = code;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

async fn send<R: ResponseHandler>(
    request: &Request,
    mut handle: R,
    code: ResponseCode,
    answers: &[Record],
    soa: &[Record],
    additionals: &[Record],
) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.message_type = MessageType::Response;
    metadata.authoritative = true;
    metadata.recursion_available = true;
    metadata.response_code = code;
    let edns = request.edns.as_ref().map(|req| {
        let mut e = Edns::new();
        e.set_max_payload(req.max_payload().max(512));
        e
    });
    let limit = match request.protocol() {
        Protocol::Udp => usize::from(edns.as_ref().map_or(512, Edns::max_payload)),
        _ => usize::from(u16::MAX),
    };
    // A UDP answer that does not fit is truncated (the client retries over TCP) rather than failed.
    let truncate = answers.len() + additionals.len() > 8
        && encoded_len(answers, soa, additionals) + 64 > limit;
    let mut builder = MessageResponseBuilder::from_message_request(request);
    if let Some(e) = edns.as_ref() {
        builder.edns(e);
    }
    let response = if truncate {
        metadata.truncation = true;
        builder.build(metadata, [].iter(), [].iter(), [].iter(), [].iter())
    } else {
        builder.build(
            metadata,
            answers.iter(),
            [].iter(),
            soa.iter(),
            additionals.iter(),
        )
    };
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "sending a DNS response failed");
            failed(request, ResponseCode::ServFail)
        }
    }
}

fn encoded_len(answers: &[Record], soa: &[Record], additionals: &[Record]) -> usize {
    let mut m = Message::new(0, MessageType::Response, OpCode::Query);
    m.answers = answers.to_vec();
    m.authorities = soa.to_vec();
    m.additionals = additionals.to_vec();
    m.to_vec().map_or(usize::MAX, |v| v.len())
}

#[async_trait::async_trait]
impl RequestHandler for ClusterDnsHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        handle: R,
    ) -> ResponseInfo {
        if request.metadata.message_type != MessageType::Query
            || request.metadata.op_code != OpCode::Query
        {
            return send(request, handle, ResponseCode::NotImp, &[], &[], &[]).await;
        }
        let Ok(info) = request.request_info() else {
            return send(request, handle, ResponseCode::FormErr, &[], &[], &[]).await;
        };
        let qname = info.query.original().name().clone();
        let qtype = info.query.query_type();
        let index = self.current();
        let soa = [index.soa().clone()];
        match index.answer(&qname, qtype) {
            Answer::Records {
                answers,
                additionals,
            } => {
                send(
                    request,
                    handle,
                    ResponseCode::NoError,
                    &answers,
                    &[],
                    &additionals,
                )
                .await
            }
            Answer::NoData => send(request, handle, ResponseCode::NoError, &[], &soa, &[]).await,
            Answer::NxDomain => send(request, handle, ResponseCode::NXDomain, &[], &soa, &[]).await,
            Answer::Alias { cname, target } => {
                let mut answers = vec![*cname];
                if qtype != RecordType::CNAME {
                    answers.extend(self.resolve_upstream(&target, qtype).await);
                }
                send(request, handle, ResponseCode::NoError, &answers, &[], &[]).await
            }
            Answer::Forward => match &self.forward {
                Some(catalog) => catalog.handle_request::<R, T>(request, handle).await,
                None => send(request, handle, ResponseCode::Refused, &[], &[], &[]).await,
            },
        }
    }
}

impl ClusterDnsHandler {
    /// The target of an ExternalName Service, resolved by the forwarder (nothing when it fails: the
    /// client still has the CNAME).
    async fn resolve_upstream(
        &self,
        target: &hickory_server::proto::rr::Name,
        qtype: RecordType,
    ) -> Vec<Record> {
        use hickory_server::zone_handler::LookupOptions;
        let Some(catalog) = &self.forward else {
            return Vec::new();
        };
        let lower = hickory_server::proto::rr::LowerName::from(target);
        let Some(handlers) = catalog.find(&lower) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for handler in handlers {
            let lookup = handler
                .lookup(&lower, qtype, None, LookupOptions::default())
                .await;
            if let Some(Ok(found)) = lookup.map_result() {
                out.extend(found.iter().cloned());
                break;
            }
        }
        out
    }
}
