//! Bounds on the flows that hold a scarce host resource (a host socket, so a file
//! descriptor): per owner (a container) and in total, with the eviction order of Linux
//! conntrack's `early_drop` (`nf_conntrack_core.c`): a new flow that finds no room
//! takes the place of a datagram flow that never saw a reply, else of the least
//! recently used datagram flow, else of a connection still being set up, and never of
//! a pinned flow (an established TCP connection), which a full budget only refuses new
//! flows for. Connections being set up come last so that a flood of datagrams cannot
//! cut the container's own connects short.
//!
//! Layer: sans-IO core. The caller (the host-socket engine) asks [`FlowBudget::admit`]
//! before it opens a socket for a new flow, closes whatever flow the answer evicts,
//! reports traffic with [`FlowBudget::touch`] (O(1), no allocation: two intrusive
//! lists per owner in one slab), pins a flow once it is established and releases it
//! when it ends.
//!
//! Fairness: an owner at its own bound evicts only its own flows; when the whole
//! budget is full, the flow evicted is one of the owner that holds the most, so a
//! container flooding new flows pushes out its own and nobody else's as long as it
//! holds more than they do.

use std::collections::HashMap;

/// The bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetConfig {
    /// Most flows at once, over all owners.
    pub total: usize,
    /// Most flows of one owner at once.
    pub per_owner: usize,
}

/// Who a flow is charged to, chosen by the caller (a container).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner(pub u64);

/// A flow's place in the budget. Stale handles (of a flow that was evicted or
/// released) are recognised and ignored, so a late `touch` or `release` never hits
/// the flow that reused the place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetSlot {
    index: u32,
    generation: u32,
}

/// What a flow is, for the eviction order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowKind {
    /// A datagram flow (UDP, ICMP echo): unreplied until [`FlowBudget::touch`] says
    /// otherwise.
    Datagram,
    /// A connection being set up (a TCP connect in progress): evicted only when no
    /// datagram flow of the owner is left; [`FlowBudget::pin`] it once established.
    Connection,
}

/// Why a flow was evicted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// It had seen no reply (an unanswered UDP datagram, a TCP connect in progress).
    Unreplied,
    /// Every unreplied datagram flow was gone; this one was used least recently.
    LeastRecentlyUsed,
}

/// Which bound refused a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// The owner holds its most flows, all of them pinned.
    Owner,
    /// The budget is full and no flow in it can be evicted.
    Total,
}

/// The answer to [`FlowBudget::admit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// There was room.
    Admitted(BudgetSlot),
    /// Admitted in the place of the flow the caller knows as `evicted` (its token),
    /// which the caller must now close; its slot is already released.
    Evicting {
        slot: BudgetSlot,
        evicted: u64,
        reason: Eviction,
    },
    /// No room: the new flow must be refused.
    Refused(Limit),
}

/// The list a flow is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum List {
    Unreplied = 0,
    Replied = 1,
    Connecting = 2,
    Pinned = 3,
}

/// Evictable lists, in eviction order.
const EVICTABLE: [List; 3] = [List::Unreplied, List::Replied, List::Connecting];

const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Node {
    token: u64,
    owner: u32,
    prev: u32,
    next: u32,
    list: List,
    generation: u32,
    used: bool,
}

/// A doubly linked list through the slab: least recently used at `head`.
#[derive(Clone, Copy, Debug)]
struct Ends {
    head: u32,
    tail: u32,
}

impl Ends {
    const EMPTY: Self = Self {
        head: NIL,
        tail: NIL,
    };
}

#[derive(Clone, Debug)]
struct OwnerState {
    id: Owner,
    /// Flows charged to the owner, pinned ones included.
    flows: usize,
    /// The evictable lists, by `List` discriminant.
    lists: [Ends; 3],
}

impl OwnerState {
    fn evictable(&self) -> bool {
        self.lists.iter().any(|l| l.head != NIL)
    }
}

/// The budget. See the module documentation.
#[derive(Debug)]
pub struct FlowBudget {
    config: BudgetConfig,
    nodes: Vec<Node>,
    free_nodes: Vec<u32>,
    owners: Vec<OwnerState>,
    free_owners: Vec<u32>,
    owner_index: HashMap<Owner, u32>,
    flows: usize,
}

impl FlowBudget {
    /// An empty budget. A bound of zero admits nothing.
    pub fn new(config: BudgetConfig) -> Self {
        Self {
            config,
            nodes: Vec::new(),
            free_nodes: Vec::new(),
            owners: Vec::new(),
            free_owners: Vec::new(),
            owner_index: HashMap::new(),
            flows: 0,
        }
    }

    /// The bounds.
    pub fn config(&self) -> BudgetConfig {
        self.config
    }

    /// Flows held now, over all owners.
    pub fn len(&self) -> usize {
        self.flows
    }

    /// Whether no flow is held.
    pub fn is_empty(&self) -> bool {
        self.flows == 0
    }

    /// Flows held now by `owner`.
    pub fn owner_len(&self, owner: Owner) -> usize {
        self.owner_index
            .get(&owner)
            .map_or(0, |&o| self.owners[o as usize].flows)
    }

    /// Asks room for a new flow of `owner`, known to the caller as `token` (returned
    /// when this flow is evicted for another). It starts unreplied.
    pub fn admit(&mut self, owner: Owner, token: u64, kind: FlowKind) -> Admission {
        let held = self.owner_len(owner);
        let mut evicted = None;
        if held >= self.config.per_owner {
            match self.owner_index.get(&owner).copied() {
                Some(o) if held > 0 => match self.evict_from(o) {
                    Some(e) => evicted = Some(e),
                    None => return Admission::Refused(Limit::Owner),
                },
                _ => return Admission::Refused(Limit::Owner),
            }
        } else if self.flows >= self.config.total {
            match self.heaviest_evictable().and_then(|o| self.evict_from(o)) {
                Some(e) => evicted = Some(e),
                None => return Admission::Refused(Limit::Total),
            }
        }
        let slot = self.insert(owner, token, kind);
        match evicted {
            None => Admission::Admitted(slot),
            Some((evicted, reason)) => Admission::Evicting {
                slot,
                evicted,
                reason,
            },
        }
    }

    /// The flow saw traffic now; `replied` when that was (or it has had) a reply. Moves
    /// it to the most recently used end of its list. Pinned flows stay pinned, and
    /// connections stay connections.
    pub fn touch(&mut self, slot: BudgetSlot, replied: bool) {
        let Some(i) = self.live(slot) else { return };
        let list = self.nodes[i as usize].list;
        if list == List::Pinned {
            return;
        }
        let to = if replied && list == List::Unreplied {
            List::Replied
        } else {
            list
        };
        self.unlink(i);
        self.link_tail(i, to);
    }

    /// The flow is established (a TCP connection): it is never evicted any more.
    pub fn pin(&mut self, slot: BudgetSlot) {
        let Some(i) = self.live(slot) else { return };
        if self.nodes[i as usize].list != List::Pinned {
            self.unlink(i);
            self.nodes[i as usize].list = List::Pinned;
        }
    }

    /// The flow ended; its room is free.
    pub fn release(&mut self, slot: BudgetSlot) {
        if let Some(i) = self.live(slot) {
            self.remove(i);
        }
    }

    /// Evicts one flow to free its resource although no bound is reached (the system
    /// ran out, e.g. `EMFILE`): the victim is chosen as for a full budget. Returns its
    /// token, or `None` when every flow is pinned.
    pub fn shed(&mut self) -> Option<(u64, Eviction)> {
        let owner = self.heaviest_evictable()?;
        self.evict_from(owner)
    }

    /// Whether `slot` is a flow held now.
    pub fn holds(&self, slot: BudgetSlot) -> bool {
        self.live(slot).is_some()
    }

    fn live(&self, slot: BudgetSlot) -> Option<u32> {
        let node = self.nodes.get(slot.index as usize)?;
        (node.used && node.generation == slot.generation).then_some(slot.index)
    }

    /// The owner with the most flows among those that have an evictable one.
    fn heaviest_evictable(&self) -> Option<u32> {
        self.owner_index
            .values()
            .copied()
            .filter(|&o| self.owners[o as usize].evictable())
            .max_by_key(|&o| (self.owners[o as usize].flows, self.owners[o as usize].id))
    }

    /// Evicts the owner's least recently used flow of the first evictable list that
    /// has one (see [`EVICTABLE`]). Returns its token.
    fn evict_from(&mut self, owner: u32) -> Option<(u64, Eviction)> {
        let lists = self.owners[owner as usize].lists;
        let list = EVICTABLE
            .into_iter()
            .find(|&l| lists[l as usize].head != NIL)?;
        let victim = lists[list as usize].head;
        let reason = match list {
            List::Replied => Eviction::LeastRecentlyUsed,
            _ => Eviction::Unreplied,
        };
        let token = self.nodes[victim as usize].token;
        self.remove(victim);
        Some((token, reason))
    }

    fn insert(&mut self, owner: Owner, token: u64, kind: FlowKind) -> BudgetSlot {
        let o = match self.owner_index.get(&owner) {
            Some(&o) => o,
            None => {
                let state = OwnerState {
                    id: owner,
                    flows: 0,
                    lists: [Ends::EMPTY; 3],
                };
                let o = match self.free_owners.pop() {
                    Some(o) => {
                        self.owners[o as usize] = state;
                        o
                    }
                    None => {
                        self.owners.push(state);
                        u32::try_from(self.owners.len() - 1).unwrap_or(NIL - 1)
                    }
                };
                self.owner_index.insert(owner, o);
                o
            }
        };
        let node = Node {
            token,
            owner: o,
            prev: NIL,
            next: NIL,
            list: List::Unreplied,
            generation: 0,
            used: true,
        };
        let i = match self.free_nodes.pop() {
            Some(i) => {
                let generation = self.nodes[i as usize].generation.wrapping_add(1);
                self.nodes[i as usize] = Node { generation, ..node };
                i
            }
            None => {
                self.nodes.push(node);
                u32::try_from(self.nodes.len() - 1).unwrap_or(NIL - 1)
            }
        };
        self.owners[o as usize].flows += 1;
        self.flows += 1;
        self.link_tail(
            i,
            match kind {
                FlowKind::Datagram => List::Unreplied,
                FlowKind::Connection => List::Connecting,
            },
        );
        BudgetSlot {
            index: i,
            generation: self.nodes[i as usize].generation,
        }
    }

    fn remove(&mut self, i: u32) {
        self.unlink(i);
        let node = &mut self.nodes[i as usize];
        node.used = false;
        let o = node.owner;
        self.free_nodes.push(i);
        self.flows -= 1;
        let owner = &mut self.owners[o as usize];
        owner.flows -= 1;
        if owner.flows == 0 {
            self.owner_index.remove(&owner.id);
            self.free_owners.push(o);
        }
    }

    /// Takes node `i` off its list (a pinned node is on none).
    fn unlink(&mut self, i: u32) {
        let Node {
            prev,
            next,
            list,
            owner,
            ..
        } = self.nodes[i as usize];
        if list == List::Pinned {
            return;
        }
        let ends = &mut self.owners[owner as usize].lists[list as usize];
        if prev == NIL {
            ends.head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            ends.tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
        let node = &mut self.nodes[i as usize];
        node.prev = NIL;
        node.next = NIL;
    }

    /// Appends node `i` (on no list) at the most recently used end of `list`.
    fn link_tail(&mut self, i: u32, list: List) {
        let owner = self.nodes[i as usize].owner;
        let ends = &mut self.owners[owner as usize].lists[list as usize];
        let tail = ends.tail;
        ends.tail = i;
        if tail == NIL {
            ends.head = i;
        } else {
            self.nodes[tail as usize].next = i;
        }
        let node = &mut self.nodes[i as usize];
        node.prev = tail;
        node.next = NIL;
        node.list = list;
    }
}

#[cfg(test)]
mod tests;
