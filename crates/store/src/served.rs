//! The day's served items per person, reserved before a page is ranked
//! ([`Storage::reserve_items`](steerfeed_core::storage::Storage::reserve_items)): in
//! memory, under one lock, so concurrent pages of one process never grant more than the
//! cap. What a restart forgets, the reported count (`items_today`, the reservation's
//! floor) still bounds.

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::civil::Date;
use steerfeed_core::UserId;
use steerfeed_core::storage::{ItemAsk, ItemGrant};

/// One person's reservations on their latest day.
struct Ledger {
    day: Date,
    reserved: u32,
    /// Grants not released yet: id → items.
    open: HashMap<u64, u32>,
}

impl Ledger {
    fn new(day: Date) -> Self {
        Ledger {
            day,
            reserved: 0,
            open: HashMap::new(),
        }
    }
}

#[derive(Default)]
pub(crate) struct ServedItems {
    inner: Mutex<State>,
}

#[derive(Default)]
struct State {
    people: HashMap<UserId, Ledger>,
    next_id: u64,
    /// The newest day seen: ledgers older than two days before it leave when it moves.
    newest: Option<Date>,
}

impl ServedItems {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn reserve(&self, user: &UserId, ask: ItemAsk) -> ItemGrant {
        let day = ask.day;
        let mut st = self.state();
        st.next_id += 1;
        let id = st.next_id;
        if st.newest.is_none_or(|d| d < day) {
            st.newest = Some(day);
            // Time zones put people up to two dates apart (UTC+14 and UTC-11).
            let keep = day.checked_sub(jiff::Span::new().days(2)).unwrap_or(day);
            st.people.retain(|_, l| l.day >= keep);
        }
        let ledger = st
            .people
            .entry(user.clone())
            .or_insert_with(|| Ledger::new(day));
        if ledger.day < day {
            *ledger = Ledger::new(day);
        }
        if ledger.day > day {
            // A day older than the person's latest (a clock behind another's): nothing
            // is held for it, so only the reported count bounds it, and nothing is kept.
            let (before, granted) = ask.grant(0);
            return ItemGrant {
                day,
                before,
                granted,
                id: 0,
            };
        }
        let (before, granted) = ask.grant(ledger.reserved);
        ledger.reserved = before + granted;
        if granted > 0 {
            ledger.open.insert(id, granted);
        }
        ItemGrant {
            day,
            before,
            granted,
            id,
        }
    }

    pub(crate) fn release(&self, user: &UserId, grant: &ItemGrant, unused: u32) {
        let mut st = self.state();
        if let Some(l) = st.people.get_mut(user).filter(|l| l.day == grant.day)
            && let Some(granted) = l.open.remove(&grant.id)
        {
            l.reserved = l.reserved.saturating_sub(unused.min(granted));
        }
    }

    /// Forgets an erased person.
    pub(crate) fn forget(&self, user: &UserId) {
        self.state().people.remove(user);
    }
}
