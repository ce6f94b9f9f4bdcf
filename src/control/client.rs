//! Client side of the control socket: send one request, print the answer.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::Value;

use super::proto::{MacInfo, NetworkInfo, PublicationInfo, Request, Response, StatsInfo};

/// Sends `request` to the daemon at `control` and returns its answer, or the daemon's
/// one-line error as the error.
pub(crate) fn call(control: &Path, request: &Request) -> anyhow::Result<Value> {
    let stream = UnixStream::connect(control).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            anyhow::anyhow!(
                "daemon not running (no daemon at {}); start it with `tapnet daemon`",
                control.display()
            )
        }
        std::io::ErrorKind::PermissionDenied => {
            anyhow::anyhow!(
                "no permission to use the control socket {}",
                control.display()
            )
        }
        _ => anyhow::Error::new(err).context(format!("connect to {}", control.display())),
    })?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    (&stream)
        .write_all(&line)
        .context("send request to daemon")?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .context("read answer from daemon")?;
    if answer.is_empty() {
        bail!("the daemon closed the connection without answering");
    }
    match serde_json::from_str::<Response>(&answer).context("parse answer from daemon")? {
        Response::Ok(value) => Ok(value),
        Response::Error(message) => bail!(message),
    }
}

fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `network ls`.
pub(crate) fn print_networks(value: Value, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&value);
    }
    let networks: Vec<NetworkInfo> = serde_json::from_value(value)?;
    let rows: Vec<Vec<String>> = networks
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.subnet.to_string(),
                n.gateway.to_string(),
                n.mtu.to_string(),
                n.options.icc.to_string(),
                n.options.internal.to_string(),
                n.containers.len().to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "NAME",
            "SUBNET",
            "GATEWAY",
            "MTU",
            "ICC",
            "INTERNAL",
            "CONTAINERS",
        ],
        &rows,
    );
    Ok(())
}

/// `network inspect`: always JSON, as `docker network inspect`.
pub(crate) fn print_inspect(value: Value) -> anyhow::Result<()> {
    print_json(&value)
}

/// `connect`.
pub(crate) fn print_connect(value: Value, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&value);
    }
    let endpoint: super::proto::EndpointInfo = serde_json::from_value(value)?;
    println!(
        "connected {} to {}: {} {} {} ({})",
        endpoint.name,
        endpoint.network,
        endpoint.interface,
        endpoint.ip,
        endpoint.mac,
        serde_json::to_value(endpoint.kind)?
            .as_str()
            .unwrap_or_default()
    );
    Ok(())
}

/// `macs NETWORK`.
pub(crate) fn print_macs(value: Value, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&value);
    }
    let entries: Vec<MacInfo> = serde_json::from_value(value)?;
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.mac.to_string(),
                e.endpoint.clone(),
                if e.pinned {
                    "pinned".to_owned()
                } else {
                    format!("{:.1}s", e.age_secs)
                },
            ]
        })
        .collect();
    print_table(&["MAC", "PORT", "AGE"], &rows);
    Ok(())
}

/// `stats`.
pub(crate) fn print_stats(value: Value, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&value);
    }
    let stats: StatsInfo = serde_json::from_value(value)?;
    println!("datapath: {}", stats.datapath);
    let rows: Vec<Vec<String>> = stats
        .ports
        .iter()
        .map(|p| {
            let drops: Vec<String> = p
                .drops
                .iter()
                .map(|(reason, n)| format!("{reason}={n}"))
                .collect();
            vec![
                p.endpoint.clone(),
                p.network.clone(),
                p.rx_packets.to_string(),
                p.rx_bytes.to_string(),
                p.tx_packets.to_string(),
                p.tx_bytes.to_string(),
                format!("{}/{}", p.rx_errors, p.tx_errors),
                if drops.is_empty() {
                    "-".into()
                } else {
                    drops.join(",")
                },
            ]
        })
        .collect();
    print_table(
        &[
            "PORT",
            "NETWORK",
            "RX_PKTS",
            "RX_BYTES",
            "TX_PKTS",
            "TX_BYTES",
            "ERR_RX/TX",
            "DROPS",
        ],
        &rows,
    );
    let e = &stats.egress;
    println!(
        "egress: {} packets ({} bytes) to host sockets, {} packets ({} bytes) back; open flows: {} tcp, {} udp, \
         {} icmp; connects refused {}, unreachable {}",
        e.packets_in,
        e.bytes_in,
        e.packets_out,
        e.bytes_out,
        e.tcp_flows,
        e.udp_flows,
        e.icmp_flows,
        e.tcp_refused,
        e.tcp_unreachable
    );
    let c = &stats.control;
    println!(
        "control: {} clients connected, {} accepted, {} requests; closed: {} timed out, \
         {} too long, {} evicted, {} unread responses",
        c.connected, c.accepted, c.requests, c.timed_out, c.too_long, c.evicted, c.unread_responses
    );
    if let Some(u) = &stats.uplink {
        let drops: Vec<String> = u.drops.iter().map(|(r, n)| format!("{r}={n}")).collect();
        println!(
            "uplink {} ({}): {} frames in, {} out; {} flows tracked ({} masqueraded, {} published, \
             {} hairpin, {} routed so far); drops: {}",
            u.interface,
            u.address,
            u.rx_frames,
            u.tx_frames,
            u.flows,
            u.masqueraded_flows,
            u.published_flows,
            u.hairpin_flows,
            u.routed_flows,
            if drops.is_empty() {
                "-".to_owned()
            } else {
                drops.join(",")
            }
        );
    }
    Ok(())
}

/// `conntrack`: one `conntrack -L` line per flow, and the count on stderr as
/// conntrack-tools prints it.
pub(crate) fn print_conntrack(value: Value, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&value["entries"]);
    }
    let lines = value["lines"].as_array().cloned().unwrap_or_default();
    for line in &lines {
        println!("{}", line.as_str().unwrap_or_default());
    }
    eprintln!("tapnet: {} flow entries have been shown.", lines.len());
    Ok(())
}

/// `publish ls` (and the answer to `publish`).
pub(crate) fn print_publications(value: Value, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&value);
    }
    let rows: Vec<PublicationInfo> = serde_json::from_value(value)?;
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|p| {
            vec![
                p.network.clone(),
                p.container.clone(),
                p.container_ip.to_string(),
                p.publish.clone(),
            ]
        })
        .collect();
    print_table(&["NETWORK", "CONTAINER", "CONTAINER_IP", "PUBLISH"], &rows);
    Ok(())
}
