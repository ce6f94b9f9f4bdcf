//! The bound on flows that hold a host socket: each UDP and ICMP echo flow and each
//! TCP connection of a container holds one file descriptor, so a container that sent
//! to many destinations could take every descriptor of the process and lock every
//! other container (and itself) out of new connections. The budget
//! (`tapnet_conntrack::budget`) decides which flow gives way; this module executes
//! its answers on the engine's flows and counts them.
//!
//! DNS queries to a network's DNS address have a small budget of their own (a
//! sixteenth of the whole), so that a flood of other datagrams, which turns the main
//! budget over faster than a resolver answers, cannot evict them before their answer:
//! a flooding container's own name lookups keep working, as its TCP connects do
//! (connections being set up are evicted only after every datagram flow).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tapnet_conntrack::budget::{
    Admission, BudgetConfig, BudgetSlot, Eviction, FlowBudget, FlowKind, Limit, Owner,
};
use tapnet_conntrack::{FlowKey, Proto};
use tapnet_switch::NetworkId;

use super::{EngineLoop, KIND_PING, KIND_TCP, KIND_UDP, kind, zone_of};
use crate::engine::tcp::L4Terminator as _;
use crate::engine::{EngineStats, FlowLimits};

/// Unregistered guest addresses of a network are charged to one owner per network
/// (the rootless stack's one container; the daemon registers its containers').
const NETWORK_OWNER: u64 = 1 << 40;

/// How often, at most, a full budget is reported in the log.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Which budget a flow is charged to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pool {
    General,
    /// DNS queries to a network's DNS address.
    Dns,
}

/// A flow's place in one of the budgets.
#[derive(Clone, Copy, Debug)]
pub(super) struct Charge {
    slot: BudgetSlot,
    pool: Pool,
}

/// The main budget and the DNS queries' own.
#[derive(Debug)]
pub(super) struct Budgets {
    general: FlowBudget,
    dns: FlowBudget,
}

impl Budgets {
    /// Splits `limits` between the two: DNS gets a sixteenth (at most 1024 flows),
    /// per container in the same proportion; the two together are `limits`.
    pub(super) fn new(limits: FlowLimits) -> Self {
        let dns_total = (limits.total / 16).clamp(1, 1024);
        let dns_per_owner = if limits.per_container >= limits.total {
            dns_total
        } else {
            (dns_total * limits.per_container / limits.total.max(1)).clamp(1, dns_total)
        };
        let total = limits.total.saturating_sub(dns_total).max(1);
        let per_owner = limits
            .per_container
            .saturating_sub(dns_per_owner)
            .clamp(1, total);
        Self {
            general: FlowBudget::new(BudgetConfig { total, per_owner }),
            dns: FlowBudget::new(BudgetConfig {
                total: dns_total,
                per_owner: dns_per_owner,
            }),
        }
    }

    fn pool(&mut self, pool: Pool) -> &mut FlowBudget {
        match pool {
            Pool::General => &mut self.general,
            Pool::Dns => &mut self.dns,
        }
    }

    pub(super) fn touch(&mut self, charge: Charge, replied: bool) {
        self.pool(charge.pool).touch(charge.slot, replied);
    }

    pub(super) fn pin(&mut self, charge: Charge) {
        self.pool(charge.pool).pin(charge.slot);
    }

    pub(super) fn release(&mut self, charge: Charge) {
        self.pool(charge.pool).release(charge.slot);
    }

    fn len(&self) -> usize {
        self.general.len() + self.dns.len()
    }
}

/// Whether a socket call failed for want of a file descriptor.
pub(super) fn out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

impl EngineLoop {
    /// The container that guest address `ip` of `net` belongs to.
    fn owner_of(&self, net: NetworkId, ip: IpAddr) -> Owner {
        Owner(
            self.owners
                .get(&(net, ip))
                .copied()
                .unwrap_or(NETWORK_OWNER | u64::from(net.0)),
        )
    }

    /// Registers (or, with `None`, forgets) the container that `addrs` of `net`
    /// belong to.
    pub(super) fn set_owner(&mut self, net: NetworkId, addrs: &[IpAddr], owner: Option<u64>) {
        for &ip in addrs {
            match owner {
                Some(o) => self.owners.insert((net, ip), o),
                None => self.owners.remove(&(net, ip)),
            };
        }
    }

    /// Room for a new flow `tok` of guest `ip` on `net`, of `kind`, in `pool`. The
    /// flow the budget evicts for it is closed here; `None` (counted) when the flow
    /// must be refused.
    pub(super) fn admit_flow(
        &mut self,
        net: NetworkId,
        ip: IpAddr,
        tok: u64,
        kind: FlowKind,
        pool: Pool,
    ) -> Option<Charge> {
        let owner = self.owner_of(net, ip);
        match self.budgets.pool(pool).admit(owner, tok, kind) {
            Admission::Admitted(slot) => Some(Charge { slot, pool }),
            Admission::Evicting {
                slot,
                evicted,
                reason,
            } => {
                self.count_eviction(reason);
                self.close_flow(evicted);
                self.warn_full(ip, None);
                Some(Charge { slot, pool })
            }
            Admission::Refused(limit) => {
                self.stats.drop_flow_limit += 1;
                self.warn_full(ip, Some(limit));
                None
            }
        }
    }

    /// Runs a socket call; when the process is out of descriptors although the budget
    /// had room (descriptors held elsewhere), evicts one flow and tries once more. A
    /// failure for want of descriptors is counted.
    pub(super) fn with_fd<T>(
        &mut self,
        mut call: impl FnMut(&mut Self) -> io::Result<T>,
    ) -> io::Result<T> {
        match call(self) {
            Err(e) if out_of_fds(&e) => {
                let again = if self.shed_for_fd() {
                    call(self)
                } else {
                    Err(e)
                };
                if again.as_ref().is_err_and(out_of_fds) {
                    self.stats.drop_no_fd += 1;
                }
                again
            }
            other => other,
        }
    }

    /// Evicts one flow (as for a full budget) to free its descriptor. False when
    /// every flow is an established TCP connection.
    pub(super) fn shed_for_fd(&mut self) -> bool {
        let shed = match self.budgets.general.shed() {
            Some(x) => Some(x),
            None => self.budgets.dns.shed(),
        };
        match shed {
            Some((tok, reason)) => {
                self.count_eviction(reason);
                self.close_flow(tok);
                true
            }
            None => false,
        }
    }

    fn count_eviction(&mut self, reason: Eviction) {
        match reason {
            Eviction::Unreplied => self.stats.evicted_unreplied += 1,
            Eviction::LeastRecentlyUsed => self.stats.evicted_lru += 1,
        }
    }

    /// Closes the flow `tok` that the budget evicted (its slot is already released).
    fn close_flow(&mut self, tok: u64) {
        match kind(tok) {
            KIND_UDP => {
                let Some(flow) = self.udp.remove(&tok) else {
                    return;
                };
                if let Some(n) = self.nets.get_mut(&flow.net) {
                    n.udp.remove(&(flow.guest, flow.remote));
                }
                self.forget_ct(&flow_key(Proto::Udp, flow.net, flow.guest, flow.remote));
            }
            KIND_PING => {
                let Some(flow) = self.pings.remove(&tok) else {
                    return;
                };
                if let Some(n) = self.nets.get_mut(&flow.net) {
                    n.ping.remove(&(flow.guest, flow.remote, flow.id));
                }
                self.forget_ct(&flow_key(
                    Proto::IcmpEcho,
                    flow.net,
                    SocketAddr::new(flow.guest, flow.id),
                    SocketAddr::new(flow.remote, flow.id),
                ));
            }
            KIND_TCP => {
                // Only connections still connecting are evictable: the guest's SYN
                // gets a RST, as when the host refused it.
                let Some(c) = self.tcp.get_mut(&tok) else {
                    return;
                };
                c.slot = None;
                let (net, handle) = (c.net, c.handle);
                if let Some(n) = self.nets.get_mut(&net) {
                    n.term.abort(handle);
                    n.active = true;
                }
                self.finish_tcp(tok, false);
            }
            _ => {}
        }
    }

    /// Says in the log, at most once a minute, that the budget is full.
    fn warn_full(&mut self, ip: IpAddr, refused: Option<Limit>) {
        let now = self.elapsed();
        if self.limit_warned.is_some_and(|t| now < t + WARN_EVERY) {
            return;
        }
        self.limit_warned = Some(now);
        let config = self.budgets.general.config();
        let what = match refused {
            None => "the oldest unreplied (else least recently used) flows make room",
            Some(_) => "its established connections fill it: new flows are refused",
        };
        tracing::warn!(
            "host-socket flows of {ip}: bound reached ({} per container, {} in total); {what} \
             (counted in tapnet stats: evicted_unreplied, evicted_lru, drop_flow_limit)",
            config.per_owner,
            config.total
        );
    }

    /// Accepts again on listeners that ran out of descriptors.
    pub(super) fn retry_accepts(&mut self) {
        if self.accept_retry.is_empty() {
            return;
        }
        for tok in std::mem::take(&mut self.accept_retry) {
            self.tcp_accept(tok);
        }
    }

    /// The budget's figures in the engine's counters.
    pub(super) fn fill_limit_stats(&self, s: &mut EngineStats) {
        let (general, dns) = (self.budgets.general.config(), self.budgets.dns.config());
        s.host_sockets = self.budgets.len() as u64;
        s.host_socket_limit = (general.total + dns.total) as u64;
        s.host_socket_limit_per_container = (general.per_owner + dns.per_owner) as u64;
    }
}

fn flow_key(proto: Proto, net: NetworkId, guest: SocketAddr, remote: SocketAddr) -> FlowKey {
    FlowKey {
        zone: zone_of(net),
        proto,
        src: guest.ip(),
        src_port: guest.port(),
        dst: remote.ip(),
        dst_port: remote.port(),
    }
}
