//! Accounts by number. The engine's indexes key an account, a (currency, member) pair, by
//! a small number given the first time a transfer names it, not by its two strings: a
//! profile of the start-up replay found a third of its time comparing, hashing, copying
//! and freeing those strings (member DIDs are 50-odd bytes) in the maps each transfer
//! touches, and each such key cost a place's worth of memory again.
//!
//! A number is held while any known transfer names its account (as payer or payee) and
//! given back when the last one is forgotten: an outsider who signs transfers from ever
//! new keys makes the node hold no more names than the transfers it holds, which
//! `credit.max_unapplied_*` bounds. An account with a balance or a chain always has a
//! known transfer naming it (applied transfers are never forgotten), so a number given
//! back has nothing left under it.

use foldhash::HashMap;

/// An account of one cooperative's engine: a (currency, member) pair.
pub(super) type AccountId = u32;

#[derive(Default)]
pub(super) struct AccountIds {
    /// currency → member → number: looked up by `&str` twice, never building a key.
    by_name: HashMap<String, HashMap<String, AccountId>>,
    /// number → (currency, member, known transfers naming it); empty names once freed.
    names: Vec<(String, String, u32)>,
    free: Vec<AccountId>,
}

impl AccountIds {
    pub(super) fn get(&self, currency: &str, member: &str) -> Option<AccountId> {
        self.by_name.get(currency)?.get(member).copied()
    }

    /// The account's (currency, member).
    pub(super) fn name(&self, id: AccountId) -> (&str, &str) {
        let (currency, member, _) = &self.names[id as usize];
        (currency, member)
    }

    /// The account's (currency, member), owned.
    pub(super) fn owned_name(&self, id: AccountId) -> (String, String) {
        let (currency, member) = self.name(id);
        (currency.to_string(), member.to_string())
    }

    /// The account's number, held for one more known transfer naming it.
    pub(super) fn hold(&mut self, currency: &str, member: &str) -> AccountId {
        let id = match self.get(currency, member) {
            Some(id) => id,
            None => {
                let id = match self.free.pop() {
                    Some(id) => {
                        self.names[id as usize] = (currency.to_string(), member.to_string(), 0);
                        id
                    }
                    None => {
                        self.names.push((currency.to_string(), member.to_string(), 0));
                        AccountId::try_from(self.names.len() - 1).expect("fewer than 2^32 accounts")
                    }
                };
                if !self.by_name.contains_key(currency) {
                    self.by_name.insert(currency.to_string(), HashMap::default());
                }
                self.by_name.get_mut(currency).expect("just made").insert(member.to_string(), id);
                id
            }
        };
        self.names[id as usize].2 += 1;
        id
    }

    /// One known transfer naming the account less; its number is given back after the
    /// last. True when it was.
    pub(super) fn release(&mut self, id: AccountId) -> bool {
        let entry = &mut self.names[id as usize];
        entry.2 -= 1;
        if entry.2 > 0 {
            return false;
        }
        let (currency, member, _) = std::mem::take(entry);
        if let Some(members) = self.by_name.get_mut(&currency) {
            members.remove(&member);
            if members.is_empty() {
                self.by_name.remove(&currency);
            }
        }
        self.free.push(id);
        true
    }

    /// Numbers given so far, freed ones included: the length per-account vectors need.
    pub(super) fn len(&self) -> usize {
        self.names.len()
    }

    /// Accounts held now.
    pub(super) fn held(&self) -> usize {
        self.names.len() - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_is_held_while_transfers_name_it_and_reused_after() {
        let mut ids = AccountIds::default();
        let a = ids.hold("hours", "did:key:a");
        let b = ids.hold("hours", "did:key:b");
        assert_ne!(a, b);
        assert_eq!(ids.hold("hours", "did:key:a"), a);
        assert_eq!(ids.get("hours", "did:key:a"), Some(a));
        assert_eq!(ids.get("bread", "did:key:a"), None);
        assert_eq!(ids.name(b), ("hours", "did:key:b"));
        assert!(!ids.release(a), "a second transfer still names it");
        assert!(ids.release(a));
        assert_eq!(ids.get("hours", "did:key:a"), None);
        assert_eq!(ids.held(), 1);
        // The freed number goes to the next new account; nothing grows.
        assert_eq!(ids.hold("bread", "did:key:c"), a);
        assert_eq!(ids.len(), 2);
        assert_eq!(ids.name(a), ("bread", "did:key:c"));
    }
}
