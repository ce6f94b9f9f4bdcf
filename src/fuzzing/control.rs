//! The control protocol (`crate::control::proto`): one JSON request per line.

use crate::control::proto::{Request, Response};
use crate::portspec::PortSpec;

/// Parses `data` as a control request, as the daemon does with a line; a request that
/// parses must serialise and parse back to the same request, and every publication
/// spec it carries must parse or fail with a message, never panic. A response line
/// must survive the same round trip.
pub fn control_request(data: &[u8]) {
    if let Ok(request) = serde_json::from_slice::<Request>(data) {
        let text = serde_json::to_string(&request).expect("a parsed request serialises");
        let again: Request = serde_json::from_str(&text).expect("a serialised request parses");
        assert_eq!(
            serde_json::to_string(&again).expect("serialises"),
            text,
            "a request changed in a round trip"
        );
        let specs: &[String] = match &request {
            Request::Connect(c) => &c.publish,
            Request::Publish(p) | Request::Unpublish(p) => &p.specs,
            _ => &[],
        };
        for spec in specs {
            if let Ok(parsed) = PortSpec::parse(spec) {
                // The normalised form parses to the same publication.
                let normal = parsed.to_string();
                let back = PortSpec::parse(&normal)
                    .unwrap_or_else(|e| panic!("normalised spec {normal:?} fails: {e}"));
                assert_eq!(back, parsed, "spec {spec:?} -> {normal:?}");
            }
        }
    }
    if let Ok(response) = serde_json::from_slice::<Response>(data) {
        let text = serde_json::to_string(&response).expect("a parsed response serialises");
        assert!(!text.contains('\n'), "a response is one line");
    }
}
