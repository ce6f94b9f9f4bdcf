//! The slirp4netns JSON API (`crate::rootless::api`), against an in-memory table.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::engine::ForwardProto;
use crate::rootless::api::{ApiConfig, ForwardTable, handle_request};
use crate::rootless::stack::ForwardInfo;

/// A forward table that keeps its entries in memory, numbered as slirp4netns does,
/// and refuses a host port that is taken (as a bind would).
#[derive(Default)]
struct MemoryTable {
    forwards: RefCell<Vec<ForwardInfo>>,
    next: RefCell<u32>,
}

impl ForwardTable for MemoryTable {
    fn add(
        &self,
        proto: ForwardProto,
        host_addr: IpAddr,
        host_port: u16,
        guest_addr: IpAddr,
        guest_port: u16,
    ) -> Result<u32, String> {
        let mut forwards = self.forwards.borrow_mut();
        if forwards
            .iter()
            .any(|f| f.proto == proto && f.host_port == host_port && f.host_addr == host_addr)
        {
            return Err("Address already in use".to_owned());
        }
        let mut next = self.next.borrow_mut();
        let id = *next;
        *next += 1;
        forwards.push(ForwardInfo {
            id,
            proto,
            host_addr,
            host_port,
            guest_addr,
            guest_port,
        });
        Ok(id)
    }

    fn remove(&self, id: u32) -> Result<(), String> {
        let mut forwards = self.forwards.borrow_mut();
        let before = forwards.len();
        forwards.retain(|f| f.id != id);
        if forwards.len() == before {
            return Err("no such forward".to_owned());
        }
        Ok(())
    }

    fn list(&self) -> Vec<ForwardInfo> {
        self.forwards.borrow().clone()
    }
}

/// Splits `data` at NUL-NUL pairs into up to 8 requests and sends them in turn to one
/// table, so that add, list and remove meet. Every reply must be one JSON object with
/// `return` or `error` (with a string `desc`), on one line; the table holds no more
/// forwards than adds succeeded, and `list_hostfwd` lists exactly the table.
pub fn slirp_api(data: &[u8]) {
    let table = MemoryTable::default();
    let config = ApiConfig {
        guest_addr: Ipv4Addr::new(10, 0, 2, 100),
        guest_addr6: data
            .first()
            .is_some_and(|b| b & 1 == 1)
            .then_some(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100)),
        ipv6: data.first().is_some_and(|b| b & 1 == 1),
    };
    let body = data.get(1..).unwrap_or_default();
    let mut added = 0usize;
    for request in body.split(|&b| b == 0xff).take(8) {
        let reply = handle_request(&table, config, request);
        assert!(!reply.contains('\n'), "reply on one line: {reply}");
        let value: serde_json::Value =
            serde_json::from_str(&reply).unwrap_or_else(|e| panic!("reply {reply:?}: {e}"));
        let object = value.as_object().expect("a reply is an object");
        if let Some(error) = object.get("error") {
            assert!(error["desc"].is_string(), "error without desc: {reply}");
        } else {
            assert!(
                object.contains_key("return") || object.contains_key("entries"),
                "reply without return: {reply}"
            );
            if value["return"]["id"].is_u64() {
                added += 1;
            }
        }
        if reply.contains("\"entries\"") {
            let listed = value["entries"].as_array().map_or(0, Vec::len);
            assert_eq!(listed, table.list().len(), "list_hostfwd lists the table");
        }
    }
    assert!(
        table.list().len() <= added,
        "more forwards than successful adds"
    );
}
