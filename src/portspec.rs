//! A published port as the user writes it: `[HOSTIP:]HOST:CONTAINER[/tcp|/udp]`, with
//! ranges (`8000-8010:80-90`) and IPv6 host addresses in brackets, as Docker's `-p`.
//! Used by `tapnet run -p`, `tapnet connect -p` and `tapnet publish`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::engine::ForwardProto;

/// One `-p` publication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PortSpec {
    pub(crate) proto: ForwardProto,
    pub(crate) host_addr: IpAddr,
    pub(crate) host_port: u16,
    pub(crate) container_port: u16,
    /// Number of consecutive ports (1 unless a range).
    pub(crate) count: u16,
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let range = |p: u16| {
            if self.count > 1 {
                format!("{p}-{}", p + (self.count - 1))
            } else {
                p.to_string()
            }
        };
        let host = match self.host_addr {
            IpAddr::V6(a) => format!("[{a}]"),
            IpAddr::V4(a) => a.to_string(),
        };
        let proto = match self.proto {
            ForwardProto::Tcp => "tcp",
            ForwardProto::Udp => "udp",
        };
        write!(
            f,
            "{host}:{}:{}/{proto}",
            range(self.host_port),
            range(self.container_port)
        )
    }
}

/// Parses `8080`, `8000-8010`; returns (first, count).
fn parse_ports(s: &str, what: &str) -> Result<(u16, u16), String> {
    let one = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("invalid {what} port {p:?} (1-65535)")),
        }
    };
    match s.split_once('-') {
        None => Ok((one(s)?, 1)),
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if b < a {
                return Err(format!(
                    "invalid {what} port range {s:?}: the end is below the start"
                ));
            }
            Ok((a, b - a + 1))
        }
    }
}

impl PortSpec {
    /// Parses `[HOSTIP:]HOST:CONTAINER[/tcp|/udp]`.
    pub(crate) fn parse(spec: &str) -> Result<Self, String> {
        let (rest, proto) = match spec.rsplit_once('/') {
            Some((rest, "tcp")) => (rest, ForwardProto::Tcp),
            Some((rest, "udp")) => (rest, ForwardProto::Udp),
            Some((_, other)) => {
                return Err(format!("unknown protocol {other:?} (tcp or udp)"));
            }
            None => (spec, ForwardProto::Tcp),
        };
        let (host_addr, ports) = if let Some(after) = rest.strip_prefix('[') {
            let (ip, after) = after
                .split_once(']')
                .ok_or_else(|| "missing ']' after the IPv6 host address".to_owned())?;
            let ip: Ipv6Addr = ip
                .parse()
                .map_err(|_| format!("invalid IPv6 host address {ip:?}"))?;
            let ports = after
                .strip_prefix(':')
                .ok_or_else(|| "expected ':' after the host address".to_owned())?;
            (IpAddr::V6(ip), ports)
        } else {
            let parts: Vec<&str> = rest.split(':').collect();
            match parts.as_slice() {
                [_, _] => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), rest),
                [ip, _, _] => {
                    let ip: Ipv4Addr = ip
                        .parse()
                        .map_err(|_| format!("invalid host address {ip:?}"))?;
                    let ports = &rest[rest.find(':').map_or(0, |i| i + 1)..];
                    (IpAddr::V4(ip), ports)
                }
                [_] => {
                    return Err(
                        "expected HOST:CONTAINER ports (the host port is not optional)".to_owned(),
                    );
                }
                _ => {
                    return Err(
                        "too many ':' (write IPv6 host addresses in brackets: [::1]:8080:80)"
                            .to_owned(),
                    );
                }
            }
        };
        let (host, container) = ports
            .split_once(':')
            .ok_or_else(|| "expected HOST:CONTAINER ports".to_owned())?;
        let (host_port, host_count) = parse_ports(host, "host")?;
        let (container_port, container_count) = parse_ports(container, "container")?;
        if host_count != container_count {
            return Err(format!(
                "host port range {host} and container port range {container} have different \
                 lengths ({host_count} and {container_count})"
            ));
        }
        Ok(Self {
            proto,
            host_addr,
            host_port,
            container_port,
            count: host_count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> PortSpec {
        PortSpec::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_port_specs() {
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        assert_eq!(
            spec("8080:80"),
            PortSpec {
                proto: ForwardProto::Tcp,
                host_addr: any,
                host_port: 8080,
                container_port: 80,
                count: 1
            }
        );
        let s = spec("127.0.0.1:8080:80/udp");
        assert_eq!(s.proto, ForwardProto::Udp);
        assert_eq!(s.host_addr, IpAddr::V4(Ipv4Addr::LOCALHOST));
        let s = spec("8000-8010:80-90");
        assert_eq!((s.host_port, s.container_port, s.count), (8000, 80, 11));
        let s = spec("[::1]:8080:80/tcp");
        assert_eq!(s.host_addr, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!((s.host_port, s.container_port), (8080, 80));
        let s = spec("[::]:53-54:53-54/udp");
        assert_eq!(s.count, 2);
        assert_eq!(s.to_string(), "[::]:53-54:53-54/udp");
        assert_eq!(spec("8080:80").to_string(), "0.0.0.0:8080:80/tcp");
    }

    #[test]
    fn rejects_bad_port_specs_clearly() {
        for (s, msg) in [
            (
                "8000-8010:80-85",
                "host port range 8000-8010 and container port range 80-85 have different lengths (11 and 6)",
            ),
            (
                "80",
                "expected HOST:CONTAINER ports (the host port is not optional)",
            ),
            ("0:80", "invalid host port \"0\" (1-65535)"),
            ("8080:70000", "invalid container port \"70000\" (1-65535)"),
            ("8080:80/sctp", "unknown protocol \"sctp\" (tcp or udp)"),
            (
                "::1:8080:80",
                "too many ':' (write IPv6 host addresses in brackets: [::1]:8080:80)",
            ),
            ("[::1:8080:80", "missing ']' after the IPv6 host address"),
            ("[x]:8080:80", "invalid IPv6 host address \"x\""),
            ("[::1]8080:80", "expected ':' after the host address"),
            ("host:8080:80", "invalid host address \"host\""),
            (
                "90-80:90-80",
                "invalid host port range \"90-80\": the end is below the start",
            ),
        ] {
            assert_eq!(PortSpec::parse(s).unwrap_err(), msg, "{s}");
        }
    }
}
