//! Fuzz target: frames as an offload TAP hands them over, a `virtio_net_hdr` then the
//! frame (TSO and partial checksums, consistent or not), through what the datapath
//! does with them: `rx_prepare`, checksum completion, the NAT's partial <-> port
//! checksum conversion, the MSS raise towards the engine, the headers written out and
//! software segmentation. The decoding and every invariant live in
//! `tapnet::fuzzing::vnet_frames`, shared with the stable corpus replay test in
//! `src/fuzzing.rs`.
//!
//! Run: `fuzz/campaign.sh vnet_frames 1800`

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tapnet::fuzzing::vnet_frames(data);
});
