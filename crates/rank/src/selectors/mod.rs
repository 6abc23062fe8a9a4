//! The selector stage (DESIGN §3 step 6, §6): [`DiversitySelector`].
//!
//! The page is filled greedily, one slot at a time, by [`select_slate`], a pure function
//! over [`SlateItem`] views, a [`SelectorConfig`] and the request's [`PageRules`]:
//!
//! - **diversity re-rank** over the top `pool` candidates' embeddings, by MMR or a
//!   sliding-window DPP ([`DiversityMethod`]);
//! - **author decay**: the k-th item of a creator has its quality multiplied by
//!   `(1 − 0.25)·0.5^k + 0.25` (X's home-mixer default);
//! - **topic cap** (hard): at most 3 items carrying one topic in any 10 consecutive;
//! - **following share** from steering: "more" gives followed creators at least half of
//!   every prefix of the page while they can take a slot, "less" at most a tenth (hard);
//! - **teens** (hard): at most 1 item with a safety label in any 10 consecutive.
//!
//! Hard caps never bend: when no candidate may take the next slot, the page ends shorter.
//!
//! ## MMR or DPP
//!
//! DEFAULT_CHOICE_PENDING

mod diversity_method;
mod diversity_selector;
mod page_rules;
mod selector_config;
mod slate;
mod slate_item;

pub use diversity_method::DiversityMethod;
pub use diversity_selector::DiversitySelector;
pub use page_rules::PageRules;
pub use selector_config::{MAX_DPP_WINDOW, SelectorConfig};
pub use slate::select_slate;
pub use slate_item::SlateItem;
