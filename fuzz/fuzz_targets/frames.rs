//! Every message type either side of a socket or QUIC stream decodes:
//! arbitrary bytes must give an error, never a panic or a huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pcl::protocol::{engine, session};
use pcl::transport::decode;

fuzz_target!(|body: &[u8]| {
    let _ = decode::<engine::EngineRequest>(body);
    let _ = decode::<engine::EngineReply>(body);
    let _ = decode::<session::Request>(body);
    let _ = decode::<session::Reply>(body);
});
