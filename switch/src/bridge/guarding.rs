//! Port security on the switch: source guards, pinned MACs and DHCP snooping (the
//! rules themselves are in `crate::guard`).
//!
//! Layer: sans-IO core; the control calls here validate first and change nothing when
//! they fail, and `snoop_dhcp` runs on the data path without allocating.

use super::{ConfigError, NO_SLOT, PortRole, Switch};
use crate::guard::{self, DhcpAck, PortGuard};
use crate::mac_table::{MacKey, PinnedElsewhere};
use crate::{Instant, MacAddr, PortId};

impl Switch {
    /// Guards `port` (or, with `None`, stops guarding it): from now on it may send only
    /// what `guard` allows (see [`PortGuard`]), and the guard's MAC, if it has one, is
    /// pinned to it in the MAC table. Set it before the port carries traffic. Fails,
    /// changing nothing, for an unknown port, a MAC that is not unicast, or one pinned
    /// to another port of the network.
    pub fn set_port_guard(
        &mut self,
        now: Instant,
        port: PortId,
        guard: Option<PortGuard>,
    ) -> Result<(), ConfigError> {
        let slot = self.slot_of(port).ok_or(ConfigError::UnknownPort(port))?;
        let Some(attached) = self.port(slot) else {
            return Err(ConfigError::UnknownPort(port));
        };
        let net = attached.net;
        let old_mac = attached.guard.as_ref().and_then(|g| g.mac());
        let old_snoops = attached.guard.as_ref().is_some_and(|g| g.snoops_dhcp());
        let new_mac = guard.as_ref().and_then(PortGuard::mac);
        if let Some(mac) = new_mac {
            self.check_pin(net, slot, mac)?;
        }
        if let Some(mac) = old_mac.filter(|&m| Some(m) != new_mac) {
            self.table.unpin(MacKey::new(net, mac), slot);
        }
        if let Some(mac) = new_mac {
            // Checked above.
            let _ = self.table.pin(MacKey::new(net, mac), port, slot, now);
        }
        let new_snoops = guard.as_ref().is_some_and(PortGuard::snoops_dhcp);
        self.snooping_ports =
            self.snooping_ports + usize::from(new_snoops) - usize::from(old_snoops);
        if let Some(Some(attached)) = self.ports.get_mut(slot as usize) {
            attached.guard = guard.map(Box::new);
        }
        Ok(())
    }

    /// The guard of a port, if it has one (with the leases it learned so far).
    pub fn port_guard(&self, port: PortId) -> Option<&PortGuard> {
        self.port(self.slot_of(port)?)?.guard.as_deref()
    }

    /// Pins `mac` to `port` in the MAC table without guarding the port (a gateway's
    /// own address): it never ages or moves, and frames from other ports with it as
    /// source are dropped (`spoofed_mac`). It goes with the port.
    pub fn pin_mac(&mut self, now: Instant, port: PortId, mac: MacAddr) -> Result<(), ConfigError> {
        let slot = self.slot_of(port).ok_or(ConfigError::UnknownPort(port))?;
        let net = self.port(slot).ok_or(ConfigError::UnknownPort(port))?.net;
        self.check_pin(net, slot, mac)?;
        let _ = self.table.pin(MacKey::new(net, mac), port, slot, now);
        Ok(())
    }

    fn check_pin(&self, net: u16, slot: u32, mac: MacAddr) -> Result<(), ConfigError> {
        if !mac.is_valid_source() {
            return Err(ConfigError::InvalidMac(mac));
        }
        self.table
            .can_pin(MacKey::new(net, mac), slot)
            .map_err(|PinnedElsewhere(port)| ConfigError::MacPinned { mac, port })
    }

    /// DHCP snooping: a DHCPACK from a trusted (non-container) port in slot `ingress`,
    /// going to `egress` (or, with `None`, to its flood list), teaches the guards that
    /// snoop there the acked lease (see [`PortGuard::with_dhcp_snooping`]).
    pub(super) fn snoop_dhcp(
        &mut self,
        now: Instant,
        ingress: u32,
        egress: Option<u32>,
        frame: &[u8],
    ) {
        let Some(from) = self.port(ingress) else {
            return;
        };
        if from.role == PortRole::Container {
            return;
        }
        let Some(ack) = guard::dhcp_ack(frame) else {
            return;
        };
        match egress {
            Some(egress) => self.snoop_into(egress, &ack, now),
            None => {
                for i in 0..from.flood_slots.len() {
                    let egress = self.port(ingress).map_or(NO_SLOT, |p| p.flood_slots[i]);
                    self.snoop_into(egress, &ack, now);
                }
            }
        }
    }

    fn snoop_into(&mut self, slot: u32, ack: &DhcpAck, now: Instant) {
        if let Some(Some(port)) = self.ports.get_mut(slot as usize)
            && let Some(guard) = port.guard.as_deref_mut()
        {
            guard.snoop_dhcp_ack(ack, now);
        }
    }
}
