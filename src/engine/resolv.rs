//! Host configuration the engine's caller resolves: the host's DNS servers and the
//! address of an interface named in `--outbound-addr`.

use std::net::{IpAddr, Ipv4Addr};

/// The `nameserver` addresses of /etc/resolv.conf (IPv4 and IPv6; an IPv6 zone id such
/// as `%eth0` is dropped), or 127.0.0.1 when there are none.
pub(crate) fn host_resolvers() -> Vec<IpAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let found = parse_resolv_conf(&text);
    if found.is_empty() {
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
    } else {
        found
    }
}

/// The `nameserver` lines of a resolv.conf(5) text.
pub(crate) fn parse_resolv_conf(text: &str) -> Vec<IpAddr> {
    let mut found = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next() else { continue };
        let addr = addr.split('%').next().unwrap_or(addr);
        if let Ok(ip) = addr.parse::<IpAddr>()
            && !found.contains(&ip)
        {
            found.push(ip);
        }
    }
    found
}

/// The first address of interface `name` of the requested family (IPv6: a global or
/// unique-local one before a link-local one, which a socket could not use without a
/// scope id).
pub(crate) fn interface_addr(name: &str, v6: bool) -> Option<IpAddr> {
    let addrs = crate::sys::hostsock::interface_addrs(name, v6).ok()?;
    addrs
        .iter()
        .find(|a| match a {
            IpAddr::V6(a) => !a.is_unicast_link_local(),
            IpAddr::V4(_) => true,
        })
        .or_else(|| addrs.first())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nameservers_v4_v6_and_zone_ids() {
        let text = "# comment\nsearch example.org\nnameserver 127.0.0.53\n\
                    nameserver fe80::1%eth0\nnameserver   2001:db8::53 \nnameserver bogus\n\
                    options edns0\nnameserver 127.0.0.53\n";
        let want: Vec<IpAddr> = vec![
            "127.0.0.53".parse().unwrap(),
            "fe80::1".parse().unwrap(),
            "2001:db8::53".parse().unwrap(),
        ];
        assert_eq!(parse_resolv_conf(text), want);
        assert!(parse_resolv_conf("").is_empty());
        assert!(!host_resolvers().is_empty());
    }

    #[test]
    fn loopback_interface_address() {
        assert_eq!(
            interface_addr("lo", false),
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
        assert_eq!(interface_addr("no-such-if0", false), None);
    }
}
