//! Places: a payer's (account, sequence number), and the transfers that claim one — the
//! applied one (its payer's chain link there) and those that wait. Two viable transfers
//! at a member's place are a fork (`mod.rs`, `finality`).

use super::ids::AccountId;
use super::Ledger;
use icn_ledger_records::Hash;
use icn_proto::ledger::v1::Transfer;

impl Ledger {
    /// Transfers at `t`'s place that are not refused on their own merits.
    pub(super) fn viable_in_slot(&self, t: &Transfer) -> Vec<Hash> {
        self.ids.get(&t.currency, &t.payer).map(|id| self.viable_in_place((id, t.payer_seq))).unwrap_or_default()
    }

    /// The applied transfer at `place` and the others there not refused on their merits,
    /// in hash order.
    pub(super) fn viable_in_place(&self, place: (AccountId, u64)) -> Vec<Hash> {
        let applied = self.link(place.0, place.1).map(|l| l.hash);
        let mut viable: Vec<Hash> = applied.into_iter().chain(self.waiting_viable(place, applied)).collect();
        viable.sort_unstable();
        viable
    }

    /// How many transfers [`Ledger::viable_in_place`] finds, without listing them.
    pub(super) fn viable_count(&self, place: (AccountId, u64)) -> usize {
        let applied = self.link(place.0, place.1).map(|l| l.hash);
        applied.is_some() as usize + self.waiting_viable(place, applied).count()
    }

    /// The transfers held at `place` but `applied` (there until a recompute's sweep)
    /// that are not refused on their merits.
    pub(super) fn waiting_viable(
        &self,
        place: (AccountId, u64),
        applied: Option<Hash>,
    ) -> impl Iterator<Item = Hash> + '_ {
        let held = self.slots.get(&place).into_iter().flatten().copied();
        held.filter(move |x| Some(*x) != applied && !self.refused.contains_key(x))
    }

    /// Adds a known transfer that is not applied to its place.
    pub(super) fn hold_place(&mut self, place: (AccountId, u64), hash: Hash) {
        let holders = self.slots.entry(place).or_default();
        if let Err(at) = holders.binary_search(&hash) {
            holders.insert(at, hash);
        }
    }

    /// Takes a transfer out of its place (it applied, or is forgotten).
    pub(super) fn leave_place(&mut self, place: (AccountId, u64), hash: &Hash) {
        if let Some(holders) = self.slots.get_mut(&place) {
            holders.retain(|h| h != hash);
            if holders.is_empty() {
                self.slots.remove(&place);
            }
        }
    }
}
